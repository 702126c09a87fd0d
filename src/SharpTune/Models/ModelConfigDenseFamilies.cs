using System.Text.Json.Nodes;

namespace SharpTune.Models;

// Granite, OLMo 2 and Gemma (1): field names and defaults follow GraniteConfig, Olmo2Config and GemmaConfig
// (huggingface/transformers: models/granite/configuration_granite.py, models/olmo2/modular_olmo2.py,
// models/gemma/configuration_gemma.py), since config.json files may omit what the config class supplies.
public sealed partial record ModelConfig
{
    // GraniteConfig: the Llama fields with LlamaConfig's defaults (its own default sizes are a 7B's, none required) plus
    // four multipliers that default to 1. GraniteConfig declares no head_dim, but PretrainedConfig keeps any other
    // config.json key as an attribute and GraniteAttention reads getattr(config, "head_dim", hidden // heads)
    // (modeling_granite.py @b6dd89b4): a head_dim there sets the heads' width. SharpTune's Granite heads are
    // hidden / num_attention_heads wide, as llama.cpp's converter assumes (it drops head_dim with a warning), so another
    // head_dim is refused by name rather than read as a different model.
    private static ModelConfig Granite(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.OptionalInt("hidden_size") ?? 4096;
        var heads = r.OptionalInt("num_attention_heads") ?? 32;
        var layers = r.OptionalInt("num_hidden_layers") ?? 32;
        if (heads > 0 && r.OptionalInt("head_dim") is { } headDim && headDim != hidden / heads)
            throw new NotSupportedException(
                $"{r.Source}: field 'head_dim' is {headDim}, but SharpTune's Granite heads are hidden_size / num_attention_heads = " +
                $"{hidden} / {heads} = {hidden / heads} wide (transformers' GraniteAttention would build heads of {headDim}); not supported");
        var rope = SameRopeForEveryLayer(r, Uniform(layers, FullAttention));
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 32000,
            HiddenSize = hidden,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 11008,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? heads,
            HeadDim = hidden / heads,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 2048,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 10000.0),
            RopeScaling = RopeScaling.Read(r, rope),
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            AttentionBias = r.OptionalBool("attention_bias") ?? false,
            MlpBias = r.OptionalBool("mlp_bias") ?? false,
            HiddenAct = r.OptionalString("hidden_act") ?? "silu",
            LayerTypes = Uniform(layers, FullAttention),
            EmbeddingMultiplier = r.OptionalDouble("embedding_multiplier") ?? 1.0,
            ResidualMultiplier = r.OptionalDouble("residual_multiplier") ?? 1.0,
            AttentionMultiplier = r.OptionalDouble("attention_multiplier") ?? 1.0,
            LogitsScaling = r.OptionalDouble("logits_scaling") ?? 1.0,
            BosTokenId = r.Json.ContainsKey("bos_token_id") ? r.OptionalInt("bos_token_id") : 1,
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [2],
        };
    }

    // Olmo2Config: OlmoConfig's fields without clip_qkv, rms_norm_eps 1e-5; Olmo2Attention takes head_dim from the
    // config when it has one (getattr(config, "head_dim", hidden // heads)); the MLP has no biases.
    private static ModelConfig Olmo2(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.OptionalInt("hidden_size") ?? 4096;
        var heads = r.OptionalInt("num_attention_heads") ?? 32;
        var layers = r.OptionalInt("num_hidden_layers") ?? 32;
        // The full-attention layers' RoPE: OLMo 3's sliding layers rotate with the same base, unscaled.
        var rope = SameRopeForEveryLayer(r, Uniform(layers, FullAttention));
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 50304,
            HiddenSize = hidden,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 11008,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? heads,
            HeadDim = r.OptionalInt("head_dim") ?? hidden / heads,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 2048,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-5,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 10000.0),
            RopeScaling = RopeScaling.Read(r, rope),
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            AttentionBias = r.OptionalBool("attention_bias") ?? false,
            HiddenAct = r.OptionalString("hidden_act") ?? "silu",
            LayerTypes = Uniform(layers, FullAttention),
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [50279],
            PadTokenId = r.Json.ContainsKey("pad_token_id") ? r.OptionalInt("pad_token_id") : 1,
        };
    }

    // Olmo3Config (models/olmo3/modular_olmo3.py @02e8340b): Olmo2Config's fields and defaults, plus sliding_window
    // (default 4096) and layer_types, which default to sliding attention except on every fourth layer. A null
    // sliding_window with sliding layers is refused: Olmo3Model.forward always builds the sliding-window mask
    // (create_sliding_window_causal_mask), which raises without a window.
    private static ModelConfig Olmo3(ConfigReader r, string architecture, string modelType)
    {
        var olmo2 = Olmo2(r, architecture, modelType);
        var types = ExplicitLayerTypes(r, olmo2.NumLayers)
            ?? Enumerable.Range(0, olmo2.NumLayers).Select(i => (i + 1) % 4 != 0 ? SlidingAttention : FullAttention).ToArray();
        var window = r.Json.ContainsKey("sliding_window") ? r.OptionalInt("sliding_window") : 4096;
        if (window is null && types.Contains(SlidingAttention))
            throw new InvalidDataException(
                $"{r.Source}: field 'sliding_window' is null but layer_types has sliding_attention layers, which need a window " +
                "(transformers' Olmo3Model cannot build their mask without one)");
        return olmo2 with
        {
            LayerTypes = types,
            SlidingWindow = window,
            RopeLocalBaseFreq = Olmo3SlidingRopeTheta(r),
        };
    }

    // transformers 5 may key rope_parameters by layer type: the sliding layers then take their own section's rope_theta,
    // which must leave them unscaled (they rotate unscaled whatever the full layers' scaling). Null: no sliding_attention
    // section (the sliding layers take the config's theta, unscaled); only that section is read, never full_attention's.
    private static double? Olmo3SlidingRopeTheta(ConfigReader r)
    {
        if (RopeScaling.Source(r) is not var (key, settings) || !RopeScaling.IsPerLayerType(settings)) return null;
        if (settings[SlidingAttention] is not JsonObject own) return null;
        (string Path, JsonObject Settings) sliding = ($"{key}.{SlidingAttention}", own);
        if (RopeScaling.Read(r, sliding) is { Type: not "default" } scaling)
            throw new NotSupportedException(
                $"{r.Source}: {sliding.Path}.rope_type '{scaling.Type}' is not supported: OLMo 3's sliding-attention layers rotate without scaling");
        return RopeScaling.Theta(r, sliding, "rope_theta", 10000.0);
    }

    // GemmaConfig: its defaults are Gemma-7B's. GemmaMLP is LlamaMLP and reads hidden_act (google/gemma-2b's
    // config.json says "gelu", the exact GELU; hidden_activation is kept by the config but no longer read).
    private static ModelConfig Gemma(ConfigReader r, string architecture, string modelType)
    {
        var layers = r.OptionalInt("num_hidden_layers") ?? 28;
        var rope = SameRopeForEveryLayer(r, Uniform(layers, FullAttention));
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 256_000,
            HiddenSize = r.OptionalInt("hidden_size") ?? 3072,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 24576,
            NumLayers = layers,
            NumHeads = r.OptionalInt("num_attention_heads") ?? 16,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? 16,
            HeadDim = r.OptionalInt("head_dim") ?? 256,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 8192,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 10000.0),
            RopeScaling = RopeScaling.Read(r, rope),
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? true,
            AttentionBias = r.OptionalBool("attention_bias") ?? false,
            HiddenAct = r.OptionalString("hidden_act") ?? "gelu_pytorch_tanh",
            LayerTypes = Uniform(layers, FullAttention),
            BosTokenId = r.Json.ContainsKey("bos_token_id") ? r.OptionalInt("bos_token_id") : 2,
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [1],
            PadTokenId = r.Json.ContainsKey("pad_token_id") ? r.OptionalInt("pad_token_id") : 0,
        };
    }
}
