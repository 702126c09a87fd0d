namespace SharpTune.Comparison;

/// <summary>One method's row in a comparison: what it trained, what it cost, how well it did.</summary>
/// <param name="Method">The name as given (e.g. "prompt").</param>
/// <param name="RegisteredMethod">The <c>--method</c> name it ran as (e.g. "prompt-tuning").</param>
/// <param name="PeakWorkingSetMb">The process's peak working set during the run (resident memory, MiB).</param>
/// <param name="PeakAboveBaselineMb">That peak minus the working set just before the run: what this run added.</param>
/// <param name="Seconds">Wall time of the whole run (loading, training, evaluation, saving).</param>
/// <param name="TokensPerSecond">Training tokens per second of the training loop (validation and checkpoints included).</param>
/// <param name="TestLoss">Loss of the final model on the test data (per supervised token; per pair for DPO).</param>
/// <param name="TestPerplexity">exp(test loss) for SFT; null for DPO.</param>
/// <param name="TestExactMatch">Greedy answers equal to the reference (normalised), when the test answers are short; else null.</param>
public sealed record ComparisonRow(
    string Method,
    string RegisteredMethod,
    long TrainableParameters,
    long TotalParameters,
    double PeakWorkingSetMb,
    double PeakAboveBaselineMb,
    double Seconds,
    double TokensPerSecond,
    double? BestValidationLoss,
    double? TestLoss,
    double? TestPerplexity,
    double? TestExactMatch,
    string RunDirectory)
{
    /// <summary>Optimizer steps the method trained: the same for every method of a comparison (one budget).</summary>
    public int Steps { get; init; }

    /// <summary>Training tokens the method processed: the same for every method of a comparison (one budget).</summary>
    public long TrainingTokens { get; init; }
}

/// <summary>All rows of a comparison and where its table and plots were written.</summary>
public sealed record ComparisonResult(IReadOnlyList<ComparisonRow> Rows, string MarkdownPath, string JsonPath, IReadOnlyList<string> PlotPaths);

/// <summary>Progress of a comparison: which method is running (and its training progress).</summary>
public sealed record ComparisonProgress(string Method, int Index, int Count, Training.TrainingProgress? Training);
