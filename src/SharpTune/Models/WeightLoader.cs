using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>Where named weights come from (a checkpoint folder, a state dict in memory).</summary>
public interface ITensorSource
{
    IReadOnlyCollection<string> Names { get; }
    long[] ShapeOf(string name);
    /// <summary>Reads one tensor, converted to <paramref name="dtype"/>. The caller disposes it.</summary>
    Tensor Read(string name, ScalarType dtype);
}

/// <summary>Copies weights into a model by name, refusing missing, unexpected or mis-shaped tensors.</summary>
public static class WeightLoader
{
    public static void Load(CausalLanguageModel model, ITensorSource source, string sourceDescription)
    {
        var parameters = model.state_dict();
        var expected = parameters.Keys.ToHashSet();
        var available = source.Names.ToHashSet();
        var missing = expected.Where(n => !available.Contains(n)).OrderBy(n => n).ToList();
        var unexpected = available.Where(n => !expected.Contains(n) && !model.IsIgnorableCheckpointTensor(n)).OrderBy(n => n).ToList();
        var misShaped = expected.Where(available.Contains)
            .Where(n => !parameters[n].shape.SequenceEqual(source.ShapeOf(n)))
            .Select(n => $"{n}: expected [{string.Join(", ", parameters[n].shape)}], found [{string.Join(", ", source.ShapeOf(n))}]")
            .ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || misShaped.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing tensors ({missing.Count}): {Describe(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected tensors ({unexpected.Count}): {Describe(unexpected)}");
            if (misShaped.Count > 0) parts.Add($"mis-shaped tensors ({misShaped.Count}): {Describe(misShaped)}");
            throw new InvalidDataException(
                $"{sourceDescription}: the weights do not match {model.Config.Architecture} as config.json describes it — " +
                string.Join("; ", parts));
        }
        using var noGrad = no_grad();
        foreach (var (name, parameter) in parameters)
        {
            using var value = source.Read(name, parameter.dtype);
            parameter.copy_(value);
        }
    }

    private static string Describe(IReadOnlyList<string> names) =>
        string.Join(", ", names.Take(12)) + (names.Count > 12 ? $", … and {names.Count - 12} more" : "");
}
