namespace SharpTune.Models;

// gpt-oss (openai/gpt-oss-20b, -120b): field names and defaults follow GptOssConfig (huggingface/transformers@02b8f42b,
// models/gpt_oss/configuration_gpt_oss.py; its defaults are gpt-oss-120b's), since config.json files may omit what the
// config class supplies.
public sealed partial record ModelConfig
{
    // Layers alternate sliding (even indices) and full attention unless layer_types says otherwise; RoPE defaults to
    // YaRN ×32 over 4,096 positions without truncating the ramp, theta 150,000. num_experts is GptOssConfig's alias of
    // num_local_experts. The released config.json also writes experts_per_token beside an equal num_experts_per_tok;
    // GptOssConfig ignores it (no alias), and so does this reader: a folder with only experts_per_token routes to the
    // default 4 experts here as in transformers, rather than to a count transformers would not use.
    private static ModelConfig GptOss(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.OptionalInt("hidden_size") ?? 2880;
        var heads = r.OptionalInt("num_attention_heads") ?? 64;
        var layers = r.OptionalInt("num_hidden_layers") ?? 36;
        var keyValueHeads = r.OptionalInt("num_key_value_heads") ?? 8;
        if (heads <= 0 || keyValueHeads <= 0 || heads % keyValueHeads != 0)
            throw new InvalidDataException(
                $"{r.Source}: num_attention_heads {heads} must be a multiple of num_key_value_heads {keyValueHeads}");
        if (r.OptionalDouble("attention_dropout") is { } dropout and not 0)
            throw new NotSupportedException($"{r.Source}: attention_dropout = {dropout} is not implemented for gpt-oss (0 is)");
        var types = ExplicitLayerTypes(r, layers)
                    ?? Enumerable.Range(0, layers).Select(i => i % 2 == 0 ? SlidingAttention : FullAttention).ToArray();
        var rope = SameRopeForEveryLayer(r, types);
        var expertCount = r.OptionalInt("num_local_experts") ?? r.OptionalInt("num_experts") ?? 128;
        var experts = new MixtureOfExperts(
            ExpertCount: expertCount,
            ExpertsPerToken: r.OptionalInt("num_experts_per_tok") ?? 4,
            ExpertIntermediateSize: r.OptionalInt("intermediate_size") ?? 2880,
            NormalizeTopKProbabilities: false,
            DecoderSparseStep: 1,
            DenseLayers: [],
            RouterAuxLossCoefficient: r.OptionalDouble("router_aux_loss_coef") ?? 0.001,
            OutputRouterLogits: r.OptionalBool("output_router_logits") ?? false)
        {
            SwigluAlpha = r.OptionalDouble("swiglu_alpha") ?? 1.702,
            SwigluLimit = r.OptionalDouble("swiglu_limit") ?? 7.0,
        };
        if (experts.ExpertsPerToken < 1 || experts.ExpertsPerToken > experts.ExpertCount)
            throw new InvalidDataException(
                $"{r.Source}: num_experts_per_tok = {experts.ExpertsPerToken} must be between 1 and num_local_experts = {experts.ExpertCount}");
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 201_088,
            HiddenSize = hidden,
            IntermediateSize = experts.ExpertIntermediateSize,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = keyValueHeads,
            // GptOssConfig: head_dim defaults to 64; only an explicit null falls back to hidden_size / num_attention_heads.
            HeadDim = r.OptionalInt("head_dim") ?? (r.Json.ContainsKey("head_dim") ? hidden / heads : 64),
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 131_072,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-5,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 150_000.0),
            RopeScaling = rope is null ? DefaultGptOssRope : RopeScaling.Read(r, rope),
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            AttentionBias = r.OptionalBool("attention_bias") ?? true,
            HiddenAct = r.OptionalString("hidden_act") ?? "silu",
            LayerTypes = types,
            SlidingWindow = r.Json.ContainsKey("sliding_window") ? r.OptionalInt("sliding_window") : 128,
            Experts = experts,
        };
    }

    // GptOssConfig.__post_init__'s rope_parameters when config.json has none.
    private static readonly RopeScaling DefaultGptOssRope = new("yarn", Factor: 32.0, OriginalMaxPositionEmbeddings: 4096)
    {
        BetaFast = 32.0,
        BetaSlow = 1.0,
        Truncate = false,
    };
}
