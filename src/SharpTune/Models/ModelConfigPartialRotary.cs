namespace SharpTune.Models;

// What the families that rotate only part of each head and keep dropout probabilities in config.json (GPT-NeoX, Phi-1/2)
// check alike when reading it.
public sealed partial record ModelConfig
{
    // A number under rope_parameters (rope_scaling), named by its path in errors.
    private static double? RopeNumber(ConfigReader r, (string Path, System.Text.Json.Nodes.JsonObject Settings)? rope, string field)
    {
        if (rope?.Settings[field] is not { } node) return null;
        try { return node.GetValue<double>(); }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"{r.Source}: field '{rope.Value.Path}.{field}' must be a number, found {node.ToJsonString()}");
        }
    }

    // The rotated share of each head: in (0, 1] (a model without RoPE is not supported), and rotating a whole number of
    // dimension pairs, since the cached decode's rotation tables pair each rotated dimension with the one half a rotary
    // size away. The field is named as config.json spells it.
    private static void RequireEvenRotaryShare(ConfigReader r, int headDim, double share, string field)
    {
        if (share is <= 0 or > 1)
            throw new InvalidDataException(
                $"{r.Source}: {field} must be in (0, 1], found {share}; a model without RoPE (0) is not supported");
        if ((int)(headDim * share) is var rotary && rotary % 2 != 0)
            throw new InvalidDataException(
                $"{r.Source}: {field} {share} rotates int({headDim} × {share}) = {rotary} dimensions of each head; " +
                "RoPE rotates dimension pairs, so the rotary size must be even");
    }

    private static void RequireDropoutProbabilities(ConfigReader r, params string[] fields)
    {
        foreach (var field in fields)
            if (r.OptionalDouble(field) is { } p && p is < 0 or >= 1)
                throw new InvalidDataException($"{r.Source}: field '{field}' is a dropout probability and must be in [0, 1), found {p}");
    }
}
