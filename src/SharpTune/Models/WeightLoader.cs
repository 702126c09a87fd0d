using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>Where named weights come from (a checkpoint folder, a state dict in memory).</summary>
public interface ITensorSource
{
    IReadOnlyCollection<string> Names { get; }
    long[] ShapeOf(string name);
    /// <summary>Reads one tensor, converted to <paramref name="dtype"/>. The caller disposes it.</summary>
    Tensor Read(string name, ScalarType dtype);
    /// <summary>
    /// Fills <paramref name="destination"/> (same shape) with tensor <paramref name="name"/>, converted to its dtype.
    /// Sources that can write straight into the destination's memory override this to skip the temporary copy.
    /// </summary>
    void ReadInto(string name, Tensor destination)
    {
        using var value = Read(name, destination.dtype);
        destination.copy_(value);
    }
    /// <summary>
    /// Names the file does not store because they share another tensor's data: safetensors' <c>__metadata__</c>
    /// maps each removed name to the stored one (safetensors.torch.save_model writes this for tied weights).
    /// </summary>
    IReadOnlyDictionary<string, string> Aliases => new Dictionary<string, string>();
}

/// <summary>
/// Copies weights into a model by name, resolving names as transformers does: with or without the base-model prefix,
/// the text model of a multimodal Gemma 3 checkpoint, tied embeddings stored under either name (or aliased in the
/// safetensors metadata), checkpoint tensors the architecture ignores; missing, unexpected or mis-shaped tensors are
/// refused by name. Values convert to the parameter's dtype.
/// </summary>
public static class WeightLoader
{
    /// <param name="loadedElsewhere">Stored tensor names another loader already consumed (quantized weights).</param>
    public static void Load(CausalLanguageModel model, ITensorSource source, string sourceDescription,
        IReadOnlySet<string>? loadedElsewhere = null)
    {
        var parameters = model.state_dict();
        var resolved = CheckpointNames.Resolve(model, source, parameters.Keys);
        if (loadedElsewhere is not null)
            resolved = resolved with { Unexpected = resolved.Unexpected.Where(n => !loadedElsewhere.Contains(n)).ToList() };
        var missing = parameters.Keys.Where(n => !resolved.Sources.ContainsKey(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var misShaped = resolved.Sources
            .Where(kv => !parameters[kv.Key].shape.SequenceEqual(source.ShapeOf(kv.Value)))
            .Select(kv => $"{kv.Key}: expected [{string.Join(", ", parameters[kv.Key].shape)}], found [{string.Join(", ", source.ShapeOf(kv.Value))}]" +
                          (kv.Key == kv.Value ? "" : $" (stored as {kv.Value})"))
            .ToList();
        if (missing.Count > 0 || resolved.Unexpected.Count > 0 || misShaped.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing tensors ({missing.Count}): {Describe(missing)}");
            if (resolved.Unexpected.Count > 0) parts.Add($"unexpected tensors ({resolved.Unexpected.Count}): {Describe(resolved.Unexpected)}");
            if (misShaped.Count > 0) parts.Add($"mis-shaped tensors ({misShaped.Count}): {Describe(misShaped)}");
            throw new InvalidDataException(
                $"{sourceDescription}: the weights do not match {model.Config.Architecture} as config.json describes it — " +
                string.Join("; ", parts));
        }
        using var noGrad = no_grad();
        foreach (var (name, parameter) in parameters) source.ReadInto(resolved.Sources[name], parameter);
    }

    private static string Describe(IReadOnlyList<string> names) =>
        string.Join(", ", names.Take(12)) + (names.Count > 12 ? $", … and {names.Count - 12} more" : "");
}
