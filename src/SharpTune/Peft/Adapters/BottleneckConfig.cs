using System.Text.Json.Nodes;

namespace SharpTune.Peft.Adapters;

/// <summary>Where bottleneck adapters go.</summary>
public enum BottleneckPlacement
{
    /// <summary>Houlsby et al. 2019: after the attention output projection and after the MLP.</summary>
    Houlsby,
    /// <summary>Pfeiffer et al. 2021: after the MLP only.</summary>
    Pfeiffer,
}

/// <summary>
/// Bottleneck adapters' settings. PEFT has no such method, so this is SharpTune's own <c>adapter_config.json</c>
/// (documented in docs/methods.md): <c>peft_type</c> "BOTTLENECK" (our name), <c>adapter_type</c> houlsby|pfeiffer,
/// <c>bottleneck_size</c> or <c>reduction_factor</c>, <c>non_linearity</c>, <c>target_modules</c>.
/// </summary>
public sealed record BottleneckConfig
{
    public const string PeftTypeName = "BOTTLENECK";

    /// <summary><c>adapter_type</c>.</summary>
    public BottleneckPlacement AdapterType { get; init; } = BottleneckPlacement.Houlsby;
    /// <summary><c>bottleneck_size</c>: the adapter's inner width; when null, the layer width / <see cref="ReductionFactor"/>.</summary>
    public int? BottleneckSize { get; init; }
    /// <summary><c>reduction_factor</c>: layer width ÷ bottleneck width when <see cref="BottleneckSize"/> is not given.</summary>
    public int ReductionFactor { get; init; } = 16;
    /// <summary><c>non_linearity</c>: relu, gelu, silu or tanh.</summary>
    public string NonLinearity { get; init; } = "relu";
    /// <summary><c>target_modules</c>: the layers whose output gets an adapter; null picks the placement's default.</summary>
    public TargetModules? TargetModules { get; init; }
    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary><c>inference_mode</c>: true in saved adapters.</summary>
    public bool InferenceMode { get; init; }

    public static readonly IReadOnlyList<string> NonLinearities = ["relu", "gelu", "silu", "tanh"];

    /// <summary>
    /// The layers the placement wraps, per <c>model_type</c>: the attention output projection (Houlsby only) and the
    /// MLP's output projection.
    /// </summary>
    public static IReadOnlyList<string> DefaultTargetModules(string modelType, BottleneckPlacement placement) => (modelType, placement) switch
    {
        ("llama" or "mistral" or "qwen2" or "qwen3" or "gemma" or "gemma2" or "gemma3_text" or "phi3" or "smollm3" or "granite" or "olmo2" or "olmo3" or "stablelm", BottleneckPlacement.Houlsby) => ["o_proj", "down_proj"],
        ("llama" or "mistral" or "qwen2" or "qwen3" or "gemma" or "gemma2" or "gemma3_text" or "phi3" or "smollm3" or "granite" or "olmo2" or "olmo3" or "stablelm", BottleneckPlacement.Pfeiffer) => ["down_proj"],
        ("gpt2", BottleneckPlacement.Houlsby) => ["attn.c_proj", "mlp.c_proj"],
        ("gpt2", BottleneckPlacement.Pfeiffer) => ["mlp.c_proj"],
        ("gpt_neox", BottleneckPlacement.Houlsby) => ["attention.dense", "dense_4h_to_h"],
        ("gpt_neox", BottleneckPlacement.Pfeiffer) => ["dense_4h_to_h"],
        ("phi", BottleneckPlacement.Houlsby) => ["self_attn.dense", "fc2"],
        ("phi", BottleneckPlacement.Pfeiffer) => ["fc2"],
        _ => throw new ArgumentException(
            $"no default bottleneck-adapter targets for model_type '{modelType}': give target_modules (the output projections)"),
    };

    /// <summary>Throws when a value is out of range or unknown.</summary>
    public void Validate(string source = "bottleneck adapter config")
    {
        if (BottleneckSize is <= 0) throw new ArgumentException($"{source}: bottleneck_size must be positive, found {BottleneckSize}");
        if (ReductionFactor <= 0) throw new ArgumentException($"{source}: reduction_factor must be positive, found {ReductionFactor}");
        if (!NonLinearities.Contains(NonLinearity))
            throw new ArgumentException($"{source}: non_linearity '{NonLinearity}' is not one of {string.Join(", ", NonLinearities)}");
    }

    /// <summary>The bottleneck width for a layer of <paramref name="width"/> outputs.</summary>
    public int SizeFor(long width) => BottleneckSize ?? (int)Math.Max(1, width / ReductionFactor);

    /// <summary>The <c>adapter_config.json</c> object.</summary>
    public JsonObject ToJson() => new()
    {
        ["adapter_type"] = AdapterType == BottleneckPlacement.Houlsby ? "houlsby" : "pfeiffer",
        ["base_model_name_or_path"] = BaseModelNameOrPath,
        ["bottleneck_size"] = BottleneckSize,
        ["inference_mode"] = InferenceMode,
        ["non_linearity"] = NonLinearity,
        ["peft_type"] = PeftTypeName,
        ["reduction_factor"] = ReductionFactor,
        ["target_modules"] = TargetModules?.ToJson(),
        ["task_type"] = "CAUSAL_LM",
    };

    // The fields ToJson writes. A field another adapter library adds (adapter-transformers' "ln_before", "scaling",
    // "residual_before_ln", …) changes the layer's computation, so any other field that is set is refused.
    private static readonly HashSet<string> KnownFields =
    [
        "peft_type", "task_type", "base_model_name_or_path", "inference_mode",
        "adapter_type", "bottleneck_size", "reduction_factor", "non_linearity", "target_modules",
    ];

    /// <summary>Reads the <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static BottleneckConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        AdapterState.RequireType(json, PeftTypeName, source);
        AdapterState.RefuseUnknownFields(json, KnownFields, "a bottleneck-adapter", source, reference: "the adapter the file describes");
        var type = AdapterState.Read(json, "adapter_type", "houlsby", source);
        var config = new BottleneckConfig
        {
            AdapterType = ParsePlacement(type, source),
            BottleneckSize = AdapterState.Read<int?>(json, "bottleneck_size", null, source),
            ReductionFactor = AdapterState.Read(json, "reduction_factor", 16, source),
            NonLinearity = AdapterState.Read(json, "non_linearity", "relu", source),
            TargetModules = json["target_modules"] is { } targets ? Peft.TargetModules.FromJson(targets, source) : null,
            BaseModelNameOrPath = AdapterState.Read<string?>(json, "base_model_name_or_path", null, source),
            InferenceMode = AdapterState.Read(json, "inference_mode", false, source),
        };
        config.Validate(source);
        return config;
    }

    /// <summary>"houlsby" or "pfeiffer" (any case).</summary>
    public static BottleneckPlacement ParsePlacement(string text, string source = "adapter_type") => text.ToLowerInvariant() switch
    {
        "houlsby" => BottleneckPlacement.Houlsby,
        "pfeiffer" => BottleneckPlacement.Pfeiffer,
        _ => throw new ArgumentException($"{source}: adapter_type '{text}' is not supported (houlsby or pfeiffer)"),
    };
}
