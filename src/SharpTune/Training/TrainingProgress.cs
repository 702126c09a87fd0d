namespace SharpTune.Training;

/// <summary>What a run reports after each logged step (rendered by the CLI, the server or a test).</summary>
public sealed record TrainingProgress(
    int Step,
    int TotalSteps,
    int Epoch,
    double Loss,
    double TokenAccuracy,
    double LearningRate,
    double GradNorm,
    double TokensPerSecond,
    TimeSpan Elapsed,
    TimeSpan? Eta,
    double? ValidationLoss = null,
    double? ValidationAccuracy = null,
    string? Message = null)
{
    /// <summary>Everything logged for this step in metrics.jsonl (e.g. DPO's rewards/margins); null for messages.</summary>
    public IReadOnlyDictionary<string, double>? Metrics { get; init; }
}

/// <summary>How a run ended.</summary>
public sealed record TrainingResult(
    int StepsCompleted,
    double? FinalTrainLoss,
    double? BestValidationLoss,
    int? BestStep,
    bool StoppedEarly,
    string RunDirectory,
    IReadOnlyList<double> TrainLosses)
{
    /// <summary>Seconds spent in the training loop this session (steps, validation, checkpoints; not set-up or final saving), and training tokens processed.</summary>
    public double TrainingSeconds { get; init; }
    public long TokensProcessed { get; init; }
}

/// <summary>The loss became NaN or infinite; the last good checkpoint is kept and nothing after it is written.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
