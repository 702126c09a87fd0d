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

    /// <summary>
    /// Where a config keeps its RoPE settings, as transformers 5 reads them (RotaryEmbeddingConfigMixin): the legacy
    /// <c>rope_scaling</c> when it is a non-empty object, else <c>rope_parameters</c> (what transformers 5 writes; it also
    /// holds rope_theta and may be keyed by layer type, {"full_attention": {…}, "sliding_attention": {…}}). Null when
    /// neither is given.
    /// </summary>
    internal static (string Key, JsonObject Settings)? Source(ConfigReader r) =>
        r.Json["rope_scaling"] is JsonObject { Count: > 0 } legacy ? ("rope_scaling", legacy)
        : r.Json["rope_parameters"] is JsonObject { Count: > 0 } parameters ? ("rope_parameters", parameters)
        : null;

    /// <summary>Whether RoPE settings are keyed by layer type (every key a layer type, every value an object).</summary>
    internal static bool IsPerLayerType(JsonObject settings) =>
        settings.Count > 0 && settings.All(p => p.Key is ModelConfig.FullAttention or ModelConfig.SlidingAttention && p.Value is JsonObject);

    /// <summary>
    /// The settings of layers of <paramref name="layerType"/> and the key path naming them in errors. Per-layer-type
    /// settings must agree for every layer type the model has unless the family gives its layers their own RoPE (Gemma 3).
    /// </summary>
    internal static (string Path, JsonObject Settings)? Section(ConfigReader r, string layerType)
    {
        if (Source(r) is not var (key, settings)) return null;
        if (!IsPerLayerType(settings)) return (key, settings);
        if (settings[layerType] is JsonObject own) return ($"{key}.{layerType}", own);
        if (settings.Count == 1) return ($"{key}.{settings.First().Key}", (JsonObject)settings.First().Value!);
        throw new InvalidDataException($"{r.Source}: {key} has no '{layerType}' entry");
    }

    /// <summary>rope_theta as transformers 5 resolves it: the RoPE settings' own, else the top-level key, else the family's default.</summary>
    internal static double Theta(ConfigReader r, (string Path, JsonObject Settings)? section, string topLevelKey, double fallback)
    {
        if (section?.Settings["rope_theta"] is { } theta)
        {
            try { return theta.GetValue<double>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw new InvalidDataException($"{r.Source}: field '{section.Value.Path}.rope_theta' must be a number, found {theta.ToJsonString()}");
            }
        }
        return r.OptionalDouble(topLevelKey) ?? fallback;
    }

    /// <summary>
    /// Reads the RoPE scaling of layers of <paramref name="layerType"/> from <c>rope_scaling</c> or <c>rope_parameters</c>
    /// (null when absent, or when rope_parameters says "default"); unsupported types are a clear error.
    /// </summary>
    internal static RopeScaling? Read(ConfigReader r, string layerType = ModelConfig.FullAttention) => Read(r, Section(r, layerType));

    internal static RopeScaling? Read(ConfigReader r, (string Path, JsonObject Settings)? section)
    {
        if (section is not var (path, scaling)) return null;
        var type = (scaling["rope_type"] ?? scaling["type"])?.GetValue<string>() ?? "default";
        if (type is "su" or "yarn" && r.OptionalString("model_type") == "phi3") type = "longrope";   // Phi3Config's renaming
        if (type == "default" && path.StartsWith("rope_parameters", StringComparison.Ordinal)) return null;
        if (!SupportedTypes.Contains(type))
            throw new NotSupportedException(
                $"{r.Source}: {path}.rope_type '{type}' is not supported ({string.Join(", ", SupportedTypes)} are)");
        double D(string key, double fallback) => scaling[key]?.GetValue<double>() ?? fallback;
        IReadOnlyList<double>? List(string key) => scaling[key] switch
        {
            null => null,
            JsonArray a => a.Select(n => n!.GetValue<double>()).ToArray(),
            var n => throw new InvalidDataException($"{r.Source}: {path}.{key} must be a list of numbers, found {n.ToJsonString()}"),
        };
        // The context the scaling extends (transformers 5's standardize_rope_params and the _compute_*_parameters):
        // dynamic NTK always takes max_position_embeddings; llama3, yarn and longrope take a top-level
        // original_max_position_embeddings first (transformers overwrites the settings' value with it, for Phi-3), else the
        // settings' own, else max_position_embeddings. Settings keyed by layer type ignore the top-level key.
        var maxPositions = r.OptionalInt("max_position_embeddings");
        var topLevelOriginal = path.Contains('.') ? null : r.OptionalInt("original_max_position_embeddings");
        var original = type switch
        {
            "dynamic" => maxPositions ?? 2048,
            _ when topLevelOriginal is { } top => top,
            _ when scaling["original_max_position_embeddings"] is { } o => (int)o.GetValue<double>(),
            _ => maxPositions ?? (type == "longrope" ? 4096 : 2048),
        };
        if (type is "linear" or "dynamic" or "yarn" or "llama3" && scaling["factor"] is null)
            throw new InvalidDataException($"{r.Source}: {path}.factor is missing: rope_type '{type}' needs a factor");
        double? Optional(string key) => scaling[key] is { } n ? n.GetValue<double>() : null;
        // longrope without a factor: max_position_embeddings / original_max_position_embeddings (its attention factor's input).
        var factor = type == "longrope" && scaling["factor"] is null ? (maxPositions ?? original) / (double)original : D("factor", 1.0);
        var result = new RopeScaling(type, factor, D("low_freq_factor", 1.0), D("high_freq_factor", 4.0), original)
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
            throw new InvalidDataException($"{r.Source}: {path}.short_factor and {path}.long_factor are required for rope_type 'longrope'");
        return result;
    }
}
