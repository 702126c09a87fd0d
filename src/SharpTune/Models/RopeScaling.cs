using System.Text.Json.Nodes;

namespace SharpTune.Models;

/// <summary>RoPE frequency scaling as Hugging Face's <c>rope_scaling</c> describes it.</summary>
/// <param name="Type">"default", "linear", "llama3" or "longrope".</param>
public sealed record RopeScaling(
    string Type,
    double Factor = 1.0,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192)
{
    /// <summary>longrope: per-frequency divisors used while the sequence fits the original context.</summary>
    public IReadOnlyList<double>? ShortFactor { get; init; }
    /// <summary>longrope: per-frequency divisors used once a position reaches past the original context.</summary>
    public IReadOnlyList<double>? LongFactor { get; init; }
    /// <summary>longrope: the factor on cos/sin; null = transformers' default √(1 + ln s / ln original).</summary>
    public double? AttentionFactor { get; init; }

    public static readonly string[] SupportedTypes = ["default", "linear", "llama3", "longrope"];

    /// <summary>Reads <c>rope_scaling</c> (null when absent or null); unsupported types are a clear error.</summary>
    internal static RopeScaling? Read(ConfigReader r)
    {
        if (r.Json["rope_scaling"] is not JsonObject scaling) return null;
        var type = (scaling["rope_type"] ?? scaling["type"])?.GetValue<string>() ?? "default";
        if (type is "su" or "yarn" && r.OptionalString("model_type") == "phi3") type = "longrope";   // Phi3Config's renaming
        if (!SupportedTypes.Contains(type))
            throw new NotSupportedException(
                $"{r.Source}: rope_scaling type '{type}' is not supported ({string.Join(", ", SupportedTypes)} are)");
        double D(string key, double fallback) => scaling[key]?.GetValue<double>() ?? fallback;
        IReadOnlyList<double>? List(string key) => scaling[key] switch
        {
            null => null,
            JsonArray a => a.Select(n => n!.GetValue<double>()).ToArray(),
            var n => throw new InvalidDataException($"{r.Source}: rope_scaling.{key} must be a list of numbers, found {n.ToJsonString()}"),
        };
        var original = scaling["original_max_position_embeddings"] is { } o ? (int)o.GetValue<double>()
            : r.OptionalInt("original_max_position_embeddings") ?? (type == "longrope" ? r.OptionalInt("max_position_embeddings") ?? 4096 : 8192);
        var result = new RopeScaling(type, D("factor", 1.0), D("low_freq_factor", 1.0), D("high_freq_factor", 4.0), original)
        {
            ShortFactor = List("short_factor"),
            LongFactor = List("long_factor"),
            AttentionFactor = scaling["attention_factor"]?.GetValue<double>(),
        };
        if (type == "longrope" && (result.ShortFactor is null || result.LongFactor is null))
            throw new InvalidDataException($"{r.Source}: rope_scaling type 'longrope' needs both short_factor and long_factor");
        return result;
    }
}
