namespace SharpTune.Models;

// StableLM: field names and defaults follow StableLmConfig (huggingface/transformers:
// models/stablelm/configuration_stablelm.py @05cd1ec1; its defaults are StableLM-3B-4E1T's), since config.json files
// may omit what the config class supplies.
public sealed partial record ModelConfig
{
    // Heads are hidden_size / num_attention_heads wide (StableLmAttention has no head_dim field and refuses a hidden size
    // the heads do not divide). The rotated share is partial_rotary_factor (default 0.25); transformers 5 keeps it, and
    // rope_theta, in rope_parameters, whose values win over the top-level ones, as for GPT-NeoX and Phi.
    private static ModelConfig StableLm(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.OptionalInt("hidden_size") ?? 2560;
        var heads = r.OptionalInt("num_attention_heads") ?? 32;
        var layers = r.OptionalInt("num_hidden_layers") ?? 32;
        if (heads <= 0 || hidden % heads != 0)
            throw new InvalidDataException(
                $"{r.Source}: hidden_size {hidden} must be a multiple of num_attention_heads {heads} (StableLM heads are hidden_size / num_attention_heads wide)");
        if (r.OptionalInt("head_dim") is { } headDim && headDim != hidden / heads)
            throw new InvalidDataException(
                $"{r.Source}: field 'head_dim' is {headDim}, but StableLM heads are hidden_size / num_attention_heads = {hidden} / {heads} = {hidden / heads} wide");
        var keyValueHeads = r.OptionalInt("num_key_value_heads") ?? 32;
        if (keyValueHeads <= 0 || heads % keyValueHeads != 0)
            throw new InvalidDataException(
                $"{r.Source}: num_attention_heads {heads} must be a multiple of num_key_value_heads {keyValueHeads}");
        var rope = SameRopeForEveryLayer(r, Uniform(layers, FullAttention));
        var rotaryShare = RotaryShare(r, rope, "partial_rotary_factor", 0.25);
        RequireEvenRotaryShare(r, hidden / heads, rotaryShare);
        RequireDropoutProbabilities(r, "hidden_dropout", "attention_dropout");
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 50304,
            HiddenSize = hidden,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 6912,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = keyValueHeads,
            HeadDim = hidden / heads,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 4096,
            NormEps = r.OptionalDouble("layer_norm_eps") ?? 1e-5,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 10000.0),
            RopeScaling = RopeScaling.Read(r, rope),
            PartialRotaryFactor = rotaryShare.Share,
            QkLayerNorm = r.OptionalBool("qk_layernorm") ?? false,
            UseParallelResidual = r.OptionalBool("use_parallel_residual") ?? false,
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            AttentionBias = r.OptionalBool("use_qkv_bias") ?? false,   // q/k/v only: o_proj never has one
            MlpBias = false,
            HiddenAct = r.OptionalString("hidden_act") ?? "silu",
            LayerTypes = Uniform(layers, FullAttention),
            BosTokenId = r.Json.ContainsKey("bos_token_id") ? r.OptionalInt("bos_token_id") : 0,
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [0],
        };
    }
}
