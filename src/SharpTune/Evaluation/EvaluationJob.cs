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
        Quantization.QuantizationOptions? quantization = null)
    {
        using var loaded = LoadedModel.Load(model, candidate.Adapter, dtype, chatTemplate, quantization);
        return new ModelEvaluator(loaded, options).Evaluate(data.Examples, candidate.Name, progress, cancellationToken)
            with { Model = model, Adapter = candidate.Adapter, Data = data.Path };
    }

    /// <summary>Evaluates every candidate on the same data and compares them (the first is the baseline).</summary>
    public static EvaluationComparison Compare(string model, IReadOnlyList<EvaluationCandidate> candidates, EvaluationData data, EvaluationOptions options,
        ScalarType? dtype = null, string? chatTemplate = null, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default,
        Quantization.QuantizationOptions? quantization = null)
    {
        var names = candidates.Select(c => c.Name).ToArray();
        if (names.Distinct().Count() != names.Length)
            throw new ArgumentException($"candidate names must be distinct ({string.Join(", ", names)}): name them as name=DIR");
        return EvaluationComparison.Compare(candidates.Select(c => Run(model, c, data, options, dtype, chatTemplate, progress, cancellationToken, quantization)).ToArray());
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
