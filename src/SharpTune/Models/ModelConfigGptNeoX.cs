namespace SharpTune.Models;

// GPT-NeoX: field names and defaults follow GPTNeoXConfig (huggingface/transformers:
// models/gpt_neox/configuration_gpt_neox.py; its defaults are GPT-NeoX-20B's), since config.json files may omit what
// the config class supplies.
public sealed partial record ModelConfig
{
    // rotary_pct and rotary_emb_base are GPTNeoXConfig's names for the rotated share of each head and the RoPE base;
    // transformers 5 keeps them in rope_parameters as partial_rotary_factor and rope_theta, which are read too. Heads are
    // hidden_size / num_attention_heads wide, and GPTNeoXAttention refuses a hidden size the heads do not divide.
    private static ModelConfig GptNeoX(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.OptionalInt("hidden_size") ?? 6144;
        var heads = r.OptionalInt("num_attention_heads") ?? 64;
        var layers = r.OptionalInt("num_hidden_layers") ?? 44;
        if (heads <= 0 || hidden % heads != 0)
            throw new InvalidDataException(
                $"{r.Source}: hidden_size {hidden} must be a multiple of num_attention_heads {heads} (GPT-NeoX heads are hidden_size / num_attention_heads wide)");
        var rope = SameRopeForEveryLayer(r, Uniform(layers, FullAttention));
        // transformers 5 (GPTNeoXConfig.convert_rope_params_to_dict) does rope_parameters.setdefault("partial_rotary_factor",
        // rotary_pct or 0.25): a value under rope_parameters wins over the top-level rotary_pct.
        var rotaryShare = RotaryShare(r, rope, "rotary_pct", 0.25);
        RequireEvenRotaryShare(r, hidden / heads, rotaryShare);
        RequireDropoutProbabilities(r, "hidden_dropout", "attention_dropout");
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 50432,
            HiddenSize = hidden,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 24576,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = heads,
            HeadDim = hidden / heads,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 2048,
            NormEps = r.OptionalDouble("layer_norm_eps") ?? 1e-5,
            RopeTheta = RopeScaling.Theta(r, rope, "rotary_emb_base", r.OptionalDouble("rope_theta") ?? 10000.0),
            RopeScaling = RopeScaling.Read(r, rope),
            PartialRotaryFactor = rotaryShare.Share,
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            AttentionBias = r.OptionalBool("attention_bias") ?? true,
            MlpBias = true,
            HiddenAct = r.OptionalString("hidden_act") ?? "gelu",
            UseParallelResidual = r.OptionalBool("use_parallel_residual") ?? true,
            LayerTypes = Uniform(layers, FullAttention),
            BosTokenId = r.Json.ContainsKey("bos_token_id") ? r.OptionalInt("bos_token_id") : 0,
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [2],
        };
    }
}
