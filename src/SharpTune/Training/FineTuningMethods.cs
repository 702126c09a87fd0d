using SharpTune.Peft;
using SharpTune.Peft.Lora;

namespace SharpTune.Training;

/// <summary>
/// The `--method` names and how each becomes a parameter-efficient adapter; `full` trains every weight and has none.
/// Adding a method is one line here plus its folder under Peft/.
/// </summary>
public static class FineTuningMethods
{
    private static readonly Dictionary<string, Func<TrainingOptions, IPeftAdapter>> Adapters = new(StringComparer.OrdinalIgnoreCase)
    {
        ["lora"] = o => new LoraAdapter(Lora(o)),
        ["dora"] = o => new LoraAdapter(Lora(o) with { UseDora = true }),
    };

    public static IReadOnlyCollection<string> Names => ["full", .. Adapters.Keys];

    /// <summary>The adapter for <paramref name="options"/>' method, or null for full fine-tuning.</summary>
    public static IPeftAdapter? CreateAdapter(TrainingOptions options)
    {
        if (string.Equals(options.Method, "full", StringComparison.OrdinalIgnoreCase)) return null;
        return Adapters.TryGetValue(options.Method, out var create)
            ? create(options)
            : throw new ArgumentException($"unknown method '{options.Method}' (choose one of: {string.Join(", ", Names)})");
    }

    private static LoraConfig Lora(TrainingOptions o) => new()
    {
        R = o.LoraR,
        LoraAlpha = o.LoraAlpha,
        LoraDropout = o.LoraDropout,
        UseRsLora = o.UseRslora,
        TargetModules = ParseTargets(o.TargetModules),
    };

    /// <summary>"all-linear", a comma-separated name list, or (anything with regex characters) a regex.</summary>
    public static TargetModules? ParseTargets(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        if (text.Trim() == "all-linear") return TargetModules.AllLinear;
        if (text.IndexOfAny(['*', '(', '[', '\\', '^', '$', '|', '?', '+']) >= 0) return TargetModules.Pattern(text.Trim());
        return TargetModules.Names(text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }
}
