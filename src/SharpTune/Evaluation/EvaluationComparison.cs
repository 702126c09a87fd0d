namespace SharpTune.Evaluation;

/// <summary>One metric across the compared models: each model's value and its difference from the first model's.</summary>
public sealed record MetricComparison(string Metric, IReadOnlyList<double> Values, IReadOnlyList<double> DeltasFromFirst);

/// <summary>One example across the compared models: each model's output and scores, and whether any output differs from the first.</summary>
public sealed record ExampleComparison(int Index, string Input, string? Reference, IReadOnlyList<string?> Outputs,
    IReadOnlyList<IReadOnlyDictionary<string, double>> Scores, bool Changed);

/// <summary>
/// Several evaluations of the same examples side by side (e.g. base, adapter A, adapter B): every corpus metric with
/// its delta from the first model, and per example the outputs next to each other, flagged when they differ.
/// </summary>
public sealed record EvaluationComparison(IReadOnlyList<string> Names, IReadOnlyList<MetricComparison> Metrics,
    IReadOnlyList<ExampleComparison> Examples)
{
    /// <summary>The evaluations compared (kept for writing their own reports).</summary>
    [System.Text.Json.Serialization.JsonIgnore] public IReadOnlyList<EvaluationResult> Results { get; init; } = [];

    /// <summary>Examples whose output differs between at least two models.</summary>
    public int ChangedExamples => Examples.Count(e => e.Changed);

    /// <summary>Compares evaluations of the same examples; the first is the baseline for deltas.</summary>
    public static EvaluationComparison Compare(IReadOnlyList<EvaluationResult> results)
    {
        if (results.Count < 2) throw new ArgumentException("a comparison needs at least two evaluations", nameof(results));
        var first = results[0];
        foreach (var r in results.Skip(1))
        {
            if (r.Records.Count != first.Records.Count)
                throw new ArgumentException($"'{r.Name}' has {r.Records.Count} examples but '{first.Name}' has {first.Records.Count}: compare evaluations of the same data");
            var mismatch = r.Records.Select((rec, i) => (rec, i)).FirstOrDefault(p => p.rec.Input != first.Records[p.i].Input);
            if (mismatch.rec is not null)
                throw new ArgumentException($"example {mismatch.i} differs between '{first.Name}' and '{r.Name}': compare evaluations of the same data");
        }
        var names = results.Select(r => r.Name).ToArray();
        if (names.Distinct().Count() != names.Length) throw new ArgumentException($"evaluation names must be distinct: {string.Join(", ", names)}");
        var metricNames = results.SelectMany(r => r.Metrics.Keys).Distinct().ToArray();
        var metrics = metricNames.Select(m =>
        {
            var values = results.Select(r => r.Metrics.TryGetValue(m, out var v) ? v : double.NaN).ToArray();
            return new MetricComparison(m, values, values.Select(v => v - values[0]).ToArray());
        }).ToArray();
        var examples = first.Records.Select((rec, i) =>
        {
            var outputs = results.Select(r => r.Records[i].Output).ToArray();
            return new ExampleComparison(i, rec.Input, rec.Reference, outputs, results.Select(r => r.Records[i].Scores).ToArray(),
                outputs.Any(o => o != outputs[0]));
        }).ToArray();
        return new EvaluationComparison(names, metrics, examples) { Results = results };
    }
}
