using System.Text.Json.Serialization;

namespace SharpTune.Evaluation;

/// <summary>
/// One example's outcome: what the model saw, the reference, what it produced, and its per-example scores
/// (e.g. perplexity, sentence BLEU, chrF, ROUGE F-measures, exact_match 0/1, correct 0/1).
/// </summary>
public sealed record ExampleRecord(int Index, string Input, string? Reference, string? Output, IReadOnlyDictionary<string, double> Scores)
{
    /// <summary>For log-likelihood labelling: each label option's summed answer log-probability (nats).</summary>
    public IReadOnlyDictionary<string, double>? LabelLogLikelihoods { get; init; }
    /// <summary>For multiple choice: every choice with its continuation's log-likelihood, in the data's order.</summary>
    public IReadOnlyList<ChoiceScore>? Choices { get; init; }
    /// <summary>For multiple choice: the indices of the correct choices.</summary>
    public IReadOnlyList<int>? Gold { get; init; }
}

/// <summary>
/// One multiple-choice option as scored: its text, the summed log-probability (nats) of the continuation
/// (target delimiter + text) after the context, how many tokens that is, and whether greedy decoding would produce it.
/// </summary>
public sealed record ChoiceScore(string Choice, double LogLikelihood, int Tokens, bool IsGreedy);

/// <summary>Classification results in report form (JSON-friendly: the confusion matrix as rows of counts).</summary>
public sealed record ClassificationSummary(string LabelMode, IReadOnlyList<string> Labels, double Accuracy,
    IReadOnlyList<ClassMetrics> PerClass, ClassMetrics Macro, ClassMetrics Micro, ClassMetrics Weighted, int[][] ConfusionMatrix)
{
    /// <summary>The plot file written beside the report (null until written).</summary>
    public string? ConfusionMatrixPlot { get; init; }

    /// <summary>The full metrics object (for plotting and sklearn-style text reports).</summary>
    [JsonIgnore] public ClassificationMetrics? Metrics { get; init; }

    /// <summary>Summarises <paramref name="metrics"/>.</summary>
    public static ClassificationSummary From(ClassificationMetrics metrics, Evaluation.LabelMode mode)
    {
        var k = metrics.Labels.Count;
        var matrix = Enumerable.Range(0, k).Select(r => Enumerable.Range(0, k).Select(c => metrics.ConfusionMatrix[r, c]).ToArray()).ToArray();
        return new ClassificationSummary(mode == Evaluation.LabelMode.LogLikelihood ? "loglik" : "generate", metrics.Labels, metrics.Accuracy,
            metrics.PerClass, metrics.Macro, metrics.Micro, metrics.Weighted, matrix) { Metrics = metrics };
    }
}

/// <summary>
/// Everything one evaluation produced: corpus-level metrics (BLEU and chrF on 0–100 as sacreBLEU prints them; ROUGE,
/// exact match and accuracy on 0–1; perplexity token-weighted), the metric signatures, classification details and the
/// per-example records.
/// </summary>
public sealed record EvaluationResult(
    string Name,
    string Format,
    int Examples,
    IReadOnlyDictionary<string, double> Metrics,
    IReadOnlyDictionary<string, string> Signatures,
    ClassificationSummary? Classification,
    IReadOnlyList<ExampleRecord> Records)
{
    /// <summary>The model folder or hub id evaluated.</summary>
    public string? Model { get; init; }
    /// <summary>The adapter folder applied, if any.</summary>
    public string? Adapter { get; init; }
    /// <summary>The data file evaluated.</summary>
    public string? Data { get; init; }
    /// <summary>What the adapter's method changed while loading where PEFT warns and goes on (see <see cref="Peft.IPeftAdapter.Warnings"/>).</summary>
    public IReadOnlyList<string> AdapterWarnings { get; init; } = [];
    /// <summary>When the evaluation finished (UTC).</summary>
    public DateTimeOffset CreatedAt { get; init; } = DateTimeOffset.UtcNow;
    /// <summary>Wall-clock seconds the evaluation took.</summary>
    public double Seconds { get; init; }
    /// <summary>
    /// A multi-label classifier's precision, recall, F1 and support per label, then the micro, macro and weighted
    /// averages (single-label classification keeps these in <see cref="Classification"/>); null otherwise.
    /// </summary>
    public IReadOnlyList<ClassMetrics>? PerLabel { get; init; }
}

/// <summary>Progress of an evaluation: the stage (scoring, generating, labelling) and examples done of total.</summary>
public sealed record EvaluationProgress(string Stage, int Done, int Total);
