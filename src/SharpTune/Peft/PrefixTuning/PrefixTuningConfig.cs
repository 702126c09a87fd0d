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
        PromptLearningFields.ValidateVirtualTokens(NumVirtualTokens, source);
        if (EncoderHiddenSize is <= 0)
            throw new ArgumentException($"{source}: encoder_hidden_size must be positive, found {EncoderHiddenSize}");
        if (InitWeights is not (null or "zero"))
            throw new NotSupportedException($"{source}: init_weights '{InitWeights}' is not supported (null or \"zero\")");
    }

    /// <summary>
    /// The <c>adapter_config.json</c> object, with every field PEFT writes for prefix tuning; <c>init_weights</c>
    /// (PEFT 0.19) only when set, since PEFT before 0.14 refuses keys it does not know.
    /// </summary>
    public JsonObject ToJson()
    {
        var own = new Dictionary<string, JsonNode?>
        {
            ["encoder_hidden_size"] = EncoderHiddenSize,
            ["prefix_projection"] = PrefixProjection,
        };
        if (InitWeights is not null) own["init_weights"] = InitWeights;
        return new PromptLearningFields(NumVirtualTokens, TokenDim, NumAttentionHeads, NumLayers, BaseModelNameOrPath, InferenceMode)
            .ToJson(PeftTypeName, own);
    }

    private static readonly string[] OwnFields = ["init_weights", "encoder_hidden_size", "prefix_projection"];

    /// <summary>Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static PrefixTuningConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        var shared = PromptLearningFields.Read(json, PeftTypeName, source, OwnFields, "a prefix-tuning");
        var config = new PrefixTuningConfig
        {
            NumVirtualTokens = shared.NumVirtualTokens,
            PrefixProjection = AdapterState.Read(json, "prefix_projection", false, source),
            EncoderHiddenSize = AdapterState.Read<int?>(json, "encoder_hidden_size", null, source),
            InitWeights = AdapterState.Read<string?>(json, "init_weights", null, source),
            TokenDim = shared.TokenDim,
            NumAttentionHeads = shared.NumAttentionHeads,
            NumLayers = shared.NumLayers,
            BaseModelNameOrPath = shared.BaseModelNameOrPath,
            InferenceMode = shared.InferenceMode,
        };
        config.Validate(source);
        return config;
    }
}
