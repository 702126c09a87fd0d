using System.Text.Json.Nodes;

namespace SharpTune.Models;

/// <summary>RoPE frequency scaling as Hugging Face's <c>rope_scaling</c> describes it.</summary>
/// <param name="Type">"default", "linear", "dynamic", "yarn", "llama3" or "longrope".</param>
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
    /// <summary>longrope and yarn: the factor on cos/sin; null = transformers' default (longrope √(1 + ln s / ln original),
    /// yarn 0.1·ln s + 1).</summary>
    public double? AttentionFactor { get; init; }
    /// <summary>yarn: frequencies turning more often than this over the original context are kept (default 32).</summary>
    public double BetaFast { get; init; } = 32;
    /// <summary>yarn: frequencies turning less often than this over the original context are interpolated (default 1).</summary>
    public double BetaSlow { get; init; } = 1;
    /// <summary>yarn (DeepSeek's configs): with <see cref="MscaleAllDim"/>, the attention factor is their two mscales' ratio.</summary>
    public double? Mscale { get; init; }
    public double? MscaleAllDim { get; init; }
    /// <summary>yarn: round the ramp's ends to whole dimensions (transformers' default, true).</summary>
    public bool Truncate { get; init; } = true;

    public static readonly string[] SupportedTypes = ["default", "linear", "dynamic", "yarn", "llama3", "longrope"];

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
        // The context the scaling extends: yarn reads it from rope_scaling or else max_position_embeddings; dynamic NTK
        // always takes max_position_embeddings (transformers' _compute_yarn_parameters, _compute_dynamic_ntk_parameters).
        var original = type switch
        {
            "dynamic" => r.OptionalInt("max_position_embeddings") ?? 2048,
            _ when scaling["original_max_position_embeddings"] is { } o => (int)o.GetValue<double>(),
            "yarn" => r.OptionalInt("max_position_embeddings") ?? 2048,
            _ => r.OptionalInt("original_max_position_embeddings") ?? (type == "longrope" ? r.OptionalInt("max_position_embeddings") ?? 4096 : 8192),
        };
        if (type is "linear" or "dynamic" or "yarn" or "llama3" && scaling["factor"] is null)
            throw new InvalidDataException($"{r.Source}: rope_scaling type '{type}' needs a factor");
        double? Optional(string key) => scaling[key] is { } n ? n.GetValue<double>() : null;
        var result = new RopeScaling(type, D("factor", 1.0), D("low_freq_factor", 1.0), D("high_freq_factor", 4.0), original)
        {
            ShortFactor = List("short_factor"),
            LongFactor = List("long_factor"),
            AttentionFactor = Optional("attention_factor"),
            // transformers reads these with `or`: a null or 0 takes the default.
            BetaFast = Optional("beta_fast") is { } fast and not 0 ? fast : 32,
            BetaSlow = Optional("beta_slow") is { } slow and not 0 ? slow : 1,
            Mscale = Optional("mscale"),
            MscaleAllDim = Optional("mscale_all_dim"),
            Truncate = scaling["truncate"]?.GetValue<bool>() ?? true,
        };
        if (type == "longrope" && (result.ShortFactor is null || result.LongFactor is null))
            throw new InvalidDataException($"{r.Source}: rope_scaling type 'longrope' needs both short_factor and long_factor");
        return result;
    }
}
