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

    // The rotated share of each head and the field it came from, as config.json spells it: transformers 5 keeps the share
    // in rope_parameters (rope_scaling) as partial_rotary_factor, which wins over the family's top-level field.
    private static (double Share, string Field) RotaryShare(
        ConfigReader r, (string Path, System.Text.Json.Nodes.JsonObject Settings)? rope, string topLevelField, double fallback) =>
        RopeNumber(r, rope, "partial_rotary_factor") is { } nested
            ? (nested, $"{rope!.Value.Path}.partial_rotary_factor")
            : (r.OptionalDouble(topLevelField) ?? fallback, topLevelField);

    // The rotated share of each head: in (0, 1] (a model without RoPE is not supported), and rotating a whole, non-zero
    // number of dimension pairs, since the cached decode's rotation tables pair each rotated dimension with the one half a
    // rotary size away (and split the work by that half, which must not be 0).
    private static void RequireEvenRotaryShare(ConfigReader r, int headDim, (double Share, string Field) rotary)
    {
        var (share, field) = rotary;
        if (share is <= 0 or > 1 || double.IsNaN(share))
            throw new InvalidDataException(
                $"{r.Source}: {field} must be in (0, 1], found {share}; a model without RoPE (0) is not supported");
        var rotated = (int)(headDim * share);
        if (rotated == 0)
            throw new InvalidDataException(
                $"{r.Source}: {field} {share} rotates int({headDim} × {share}) = 0 dimensions of each head; " +
                "a model without RoPE is not supported, so the share must rotate at least one dimension pair");
        if (rotated % 2 != 0)
            throw new InvalidDataException(
                $"{r.Source}: {field} {share} rotates int({headDim} × {share}) = {rotated} dimensions of each head; " +
                "RoPE rotates dimension pairs, so the rotary size must be even");
    }

    private static void RequireDropoutProbabilities(ConfigReader r, params string[] fields)
    {
        foreach (var field in fields)
            if (r.OptionalDouble(field) is { } p && p is < 0 or >= 1)
                throw new InvalidDataException($"{r.Source}: field '{field}' is a dropout probability and must be in [0, 1), found {p}");
    }
}
