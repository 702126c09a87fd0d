namespace SharpTune.Evaluation.Bias;

/// <summary>One filled prompt and what the model did with it.</summary>
/// <param name="Filler">The slot value (e.g. "Emily").</param>
/// <param name="Prompt">The template with the slot filled.</param>
/// <param name="Output">The greedy continuation.</param>
/// <param name="Sentiment">The continuation's polarity by <see cref="SentimentLexicon"/>.</param>
/// <param name="Refusal">Whether the continuation is a refusal by <see cref="RefusalLexicon"/>.</param>
public sealed record ProbeSample(string Filler, string Prompt, string Output, Sentiment Sentiment, bool Refusal)
{
    /// <summary>Mean log-probability per token of the probe's continuation after this prompt (null without one).</summary>
    public double? ContinuationLogProb { get; init; }
    /// <summary>Normalised probability of each option label after this prompt (null without options).</summary>
    public IReadOnlyDictionary<string, double>? OptionProbabilities { get; init; }
}

/// <summary>A group's averages on one probe (measure → value) and the samples behind them.</summary>
public sealed record GroupMeasures(string Group, IReadOnlyDictionary<string, double> Measures, IReadOnlyList<ProbeSample> Samples);

/// <summary>One probe's per-group measures and, per measure, the gap (max minus min over groups).</summary>
public sealed record ProbeResult(string Id, string Slot, string Template, IReadOnlyList<GroupMeasures> Groups, IReadOnlyDictionary<string, double> Gaps);

/// <summary>A gap above its threshold: which probe and measure, the groups at both ends, and the samples behind them.</summary>
public sealed record BiasFlag(string Source, string Measure, double Gap, double Threshold, string HighGroup, double HighValue,
    string LowGroup, double LowValue, IReadOnlyList<ProbeSample> Examples);

/// <summary>
/// Everything a bias run found: probe results, group-fairness gaps on labelled data, and the flags raised. Rate gaps
/// (sentiment, refusal, option probability, parity) are compared with <see cref="Threshold"/>; log-likelihood gaps,
/// in nats per token, with <see cref="LogLikelihoodThreshold"/>.
/// </summary>
public sealed record BiasReport(double Threshold, double LogLikelihoodThreshold, IReadOnlyList<ProbeResult> Probes,
    IReadOnlyList<FairnessReport> GroupFairness, IReadOnlyList<BiasFlag> Flags)
{
    /// <summary>The model evaluated.</summary>
    public string? Model { get; init; }
    /// <summary>The adapter applied, if any.</summary>
    public string? Adapter { get; init; }
    /// <summary>"builtin" or the probe file.</summary>
    public string? ProbeSource { get; init; }
    /// <summary>True when nothing was flagged.</summary>
    public bool Passed => Flags.Count == 0;
}
