using SharpTune.Generation;
using static TorchSharp.torch;

namespace SharpTune.Evaluation;

/// <summary>A model variant to evaluate: a display name and an adapter folder (null = the base model alone).</summary>
public sealed record EvaluationCandidate(string Name, string? Adapter)
{
    /// <summary>
    /// Parses "name=DIR", "DIR" (named after the run folder: runs/a/final → "a") or "base" (no adapter).
    /// </summary>
    public static EvaluationCandidate Parse(string spec)
    {
        if (spec == "base") return new("base", null);
        var eq = spec.IndexOf('=');
        if (eq > 0) return new(spec[..eq], spec[(eq + 1)..] is "base" ? null : spec[(eq + 1)..]);
        var full = Path.GetFullPath(spec).TrimEnd(Path.DirectorySeparatorChar);
        var leaf = Path.GetFileName(full);
        var name = leaf is "final" or "best" && Path.GetFileName(Path.GetDirectoryName(full)) is { Length: > 0 } run ? $"{run}/{leaf}" : leaf;
        return new(name, spec);
    }
}

/// <summary>Loads model + adapter and evaluates a dataset: the whole of <c>sharptune eval</c> without the printing.</summary>
public static class EvaluationJob
{
    /// <summary>Evaluates one model (with <paramref name="candidate"/>'s adapter) on <paramref name="data"/>.</summary>
    public static EvaluationResult Run(string model, EvaluationCandidate candidate, EvaluationData data, EvaluationOptions options,
        ScalarType? dtype = null, string? chatTemplate = null, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default,
        Quantization.QuantizationOptions? quantization = null) =>
        LoadAndEvaluate(model, candidate, data.Path, evaluator => evaluator.Evaluate(data.Examples, candidate.Name, progress, cancellationToken),
            options, dtype, chatTemplate, quantization);

    /// <summary>Scores one model (with <paramref name="candidate"/>'s adapter) on multiple-choice questions.</summary>
    public static EvaluationResult RunMultipleChoice(string model, EvaluationCandidate candidate, MultipleChoiceData data, EvaluationOptions options,
        ScalarType? dtype = null, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default,
        Quantization.QuantizationOptions? quantization = null) =>
        LoadAndEvaluate(model, candidate, data.Path, evaluator => evaluator.EvaluateMultipleChoice(data.Items, candidate.Name, progress, cancellationToken),
            options, dtype, null, quantization);

    /// <summary>Evaluates every candidate on the same data and compares them (the first is the baseline).</summary>
    public static EvaluationComparison Compare(string model, IReadOnlyList<EvaluationCandidate> candidates, EvaluationData data, EvaluationOptions options,
        ScalarType? dtype = null, string? chatTemplate = null, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default,
        Quantization.QuantizationOptions? quantization = null) =>
        CompareAll(candidates, c => Run(model, c, data, options, dtype, chatTemplate, progress, cancellationToken, quantization));

    /// <summary>Scores every candidate on the same multiple-choice questions and compares them (the first is the baseline).</summary>
    public static EvaluationComparison CompareMultipleChoice(string model, IReadOnlyList<EvaluationCandidate> candidates, MultipleChoiceData data, EvaluationOptions options,
        ScalarType? dtype = null, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default,
        Quantization.QuantizationOptions? quantization = null) =>
        CompareAll(candidates, c => RunMultipleChoice(model, c, data, options, dtype, progress, cancellationToken, quantization));

    private static EvaluationResult LoadAndEvaluate(string model, EvaluationCandidate candidate, string dataPath, Func<ModelEvaluator, EvaluationResult> evaluate,
        EvaluationOptions options, ScalarType? dtype, string? chatTemplate, Quantization.QuantizationOptions? quantization)
    {
        using var loaded = LoadedModel.Load(model, candidate.Adapter, dtype, chatTemplate, quantization);
        return evaluate(new ModelEvaluator(loaded, options)) with
        {
            Model = model, Adapter = candidate.Adapter, Data = dataPath, AdapterWarnings = [.. loaded.Adapter?.Warnings ?? []],
        };
    }

    private static EvaluationComparison CompareAll(IReadOnlyList<EvaluationCandidate> candidates, Func<EvaluationCandidate, EvaluationResult> run)
    {
        var names = candidates.Select(c => c.Name).ToArray();
        if (names.Distinct().Count() != names.Length)
            throw new ArgumentException($"candidate names must be distinct ({string.Join(", ", names)}): name them as name=DIR");
        return EvaluationComparison.Compare(candidates.Select(run).ToArray());
    }

    /// <summary>
    /// Where reports go by default: the run folder of the adapter (runs/x for runs/x/final or runs/x/best, else the
    /// adapter folder itself), so the runs dashboard lists them; "eval" in the working folder without an adapter.
    /// </summary>
    public static string DefaultOutputDirectory(string? adapter)
    {
        if (adapter is null) return Path.GetFullPath("eval");
        var full = Path.GetFullPath(adapter).TrimEnd(Path.DirectorySeparatorChar);
        return Path.GetFileName(full) is "final" or "best" ? Path.GetDirectoryName(full)! : full;
    }
}
