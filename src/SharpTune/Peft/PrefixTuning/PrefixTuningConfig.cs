using System.Text.Json.Nodes;

namespace SharpTune.Peft.PrefixTuning;

/// <summary>
/// Prefix tuning's settings (Li &amp; Liang 2021), one property per field of PEFT's <c>PrefixTuningConfig</c> JSON.
/// <see cref="TokenDim"/>, <see cref="NumAttentionHeads"/>, <see cref="NumLayers"/> and <see cref="EncoderHiddenSize"/>
/// are filled from the base model by <see cref="PrefixTuningAdapter.Inject"/>, as PEFT does: with grouped-query
/// attention PEFT stores the key/value heads as <c>num_attention_heads</c> and kv_heads·head_dim as <c>token_dim</c>.
/// </summary>
public sealed record PrefixTuningConfig
{
    public const string PeftTypeName = "PREFIX_TUNING";

    /// <summary><c>num_virtual_tokens</c>: the prefix length P added to every layer's keys and values.</summary>
    public int NumVirtualTokens { get; init; } = 20;
    /// <summary>
    /// <c>prefix_projection</c>: train the prefixes through a two-layer tanh MLP (the paper's reparameterisation). The
    /// saved file holds the projected prefixes, so a saved adapter loads as plain prefixes.
    /// </summary>
    public bool PrefixProjection { get; init; }
    /// <summary><c>encoder_hidden_size</c>: the MLP's hidden width (default: <see cref="TokenDim"/>).</summary>
    public int? EncoderHiddenSize { get; init; }
    /// <summary><c>init_weights</c>: null for PEFT's random start, "zero" for zero prefixes.</summary>
    public string? InitWeights { get; init; }
    /// <summary><c>token_dim</c>: key/value heads × head size.</summary>
    public int? TokenDim { get; init; }
    /// <summary><c>num_attention_heads</c>: the key/value heads the prefixes are split into.</summary>
    public int? NumAttentionHeads { get; init; }
    /// <summary><c>num_layers</c>.</summary>
    public int? NumLayers { get; init; }
    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary><c>inference_mode</c>: true in saved adapters; then the prefixes are plain tensors, never projected.</summary>
    public bool InferenceMode { get; init; }

    /// <summary>Throws when a value is out of range.</summary>
    public void Validate(string source = "prefix tuning config")
    {
        if (NumVirtualTokens <= 0)
            throw new ArgumentException($"{source}: num_virtual_tokens must be positive, found {NumVirtualTokens}");
        if (EncoderHiddenSize is <= 0)
            throw new ArgumentException($"{source}: encoder_hidden_size must be positive, found {EncoderHiddenSize}");
        if (InitWeights is not (null or "zero"))
            throw new NotSupportedException($"{source}: init_weights '{InitWeights}' is not supported (null or \"zero\")");
    }

    /// <summary>The <c>adapter_config.json</c> object, with every field PEFT writes for prefix tuning.</summary>
    public JsonObject ToJson() => new()
    {
        ["auto_mapping"] = null,
        ["base_model_name_or_path"] = BaseModelNameOrPath,
        ["encoder_hidden_size"] = EncoderHiddenSize,
        ["inference_mode"] = InferenceMode,
        ["init_weights"] = InitWeights,
        ["num_attention_heads"] = NumAttentionHeads,
        ["num_layers"] = NumLayers,
        ["num_transformer_submodules"] = 1,
        ["num_virtual_tokens"] = NumVirtualTokens,
        ["peft_type"] = PeftTypeName,
        ["prefix_projection"] = PrefixProjection,
        ["revision"] = null,
        ["task_type"] = "CAUSAL_LM",
        ["token_dim"] = TokenDim,
    };

    /// <summary>Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static PrefixTuningConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        AdapterState.RequireType(json, PeftTypeName, source);
        var submodules = AdapterState.Read<int?>(json, "num_transformer_submodules", null, source);
        if (submodules is not (null or 1))
            throw new NotSupportedException($"{source}: num_transformer_submodules = {submodules}; a decoder-only model has 1");
        var config = new PrefixTuningConfig
        {
            NumVirtualTokens = AdapterState.Read(json, "num_virtual_tokens", 0, source),
            PrefixProjection = AdapterState.Read(json, "prefix_projection", false, source),
            EncoderHiddenSize = AdapterState.Read<int?>(json, "encoder_hidden_size", null, source),
            InitWeights = AdapterState.Read<string?>(json, "init_weights", null, source),
            TokenDim = AdapterState.Read<int?>(json, "token_dim", null, source),
            NumAttentionHeads = AdapterState.Read<int?>(json, "num_attention_heads", null, source),
            NumLayers = AdapterState.Read<int?>(json, "num_layers", null, source),
            BaseModelNameOrPath = AdapterState.Read<string?>(json, "base_model_name_or_path", null, source),
            InferenceMode = AdapterState.Read(json, "inference_mode", false, source),
        };
        config.Validate(source);
        return config;
    }
}
