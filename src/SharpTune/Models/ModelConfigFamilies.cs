using System.Text.Json.Nodes;

namespace SharpTune.Models;

// Per-family parsing: field names and defaults follow each family's transformers config class (LlamaConfig,
// MistralConfig, Qwen2Config, Qwen3Config, Qwen3MoeConfig, MixtralConfig, SmolLM3Config, Gemma2Config, Gemma3TextConfig, Phi3Config, GPT2Config), because real
// config.json files often omit fields whose default the config class supplies (Gemma 3's text_config lists only a few).
public sealed partial record ModelConfig
{
    private static ModelConfig LlamaFamily(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.RequiredInt("hidden_size");
        var heads = r.RequiredInt("num_attention_heads");
        var layers = r.RequiredInt("num_hidden_layers");
        var isQwen2 = architecture == "Qwen2ForCausalLM";
        var isQwen3 = architecture == "Qwen3ForCausalLM";
        var isSmol = architecture == "SmolLM3ForCausalLM";
        var (layerTypes, window, ropeLayers) = architecture switch
        {
            // Mistral applies its window (default 4096) on every layer unless sliding_window is null.
            "MistralForCausalLM" => r.Json.ContainsKey("sliding_window") && r.Json["sliding_window"] is null
                ? (Uniform(layers, FullAttention), null, null)
                : (Uniform(layers, SlidingAttention), r.OptionalInt("sliding_window") ?? 4096, (IReadOnlyList<bool>?)null),
            "Qwen2ForCausalLM" or "Qwen3ForCausalLM" => QwenWindows(r, layers),
            "SmolLM3ForCausalLM" => SmolLM3Windows(r, layers),
            _ => (Uniform(layers, FullAttention), (int?)null, (IReadOnlyList<bool>?)null),   // Llama has no window
        };
        var attentionBias = isQwen2 || (r.OptionalBool("attention_bias") ?? false);
        var rope = SameRopeForEveryLayer(r, layerTypes);
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.RequiredInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = r.RequiredInt("intermediate_size"),
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? heads,
            HeadDim = r.OptionalInt("head_dim") ?? (isQwen3 ? 128 : hidden / heads),   // Qwen3Config defaults head_dim to 128
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 2048,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", isSmol ? 2_000_000.0 : 10000.0),
            RopeScaling = RopeScaling.Read(r, rope),
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? isSmol,
            AttentionBias = attentionBias,
            MlpBias = r.OptionalBool("mlp_bias") ?? false,
            HiddenAct = r.OptionalString("hidden_act") ?? "silu",
            LayerTypes = layerTypes,
            SlidingWindow = window,
            RopeLayers = ropeLayers,
        };
    }

    // Qwen2Config / Qwen3Config: the window exists only with use_sliding_window; layers from max_window_layers on slide.
    private static (IReadOnlyList<string>, int?, IReadOnlyList<bool>?) QwenWindows(ConfigReader r, int layers)
    {
        var window = r.OptionalBool("use_sliding_window") == true ? r.OptionalInt("sliding_window") ?? 4096 : (int?)null;
        var maxWindowLayers = r.OptionalInt("max_window_layers") ?? 28;
        var types = ExplicitLayerTypes(r, layers)
            ?? Enumerable.Range(0, layers).Select(i => window is not null && i >= maxWindowLayers ? SlidingAttention : FullAttention).ToArray();
        return (types, window, null);
    }

    // Qwen3MoeConfig (transformers@26f4b0f6 configuration_qwen3_moe.py): its defaults are Qwen3-MoE-15B-A2B's; head_dim,
    // not a field of the class, is read as Qwen3MoeAttention does (getattr(config, "head_dim", hidden // heads)), and with
    // use_sliding_window every layer slides (the config keeps sliding_window only then; there is no max_window_layers).
    private static ModelConfig Qwen3Moe(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.OptionalInt("hidden_size") ?? 2048;
        var heads = r.OptionalInt("num_attention_heads") ?? 32;
        var layers = r.OptionalInt("num_hidden_layers") ?? 24;
        var window = r.OptionalBool("use_sliding_window") == true ? r.OptionalInt("sliding_window") ?? 4096 : (int?)null;
        var types = Uniform(layers, window is null ? FullAttention : SlidingAttention);
        var rope = SameRopeForEveryLayer(r, types);
        var step = r.OptionalInt("decoder_sparse_step") ?? 1;
        if (step < 1) throw new InvalidDataException($"{r.Source}: decoder_sparse_step must be at least 1, found {step}");
        var experts = new MixtureOfExperts(
            ExpertCount: r.OptionalInt("num_experts") ?? 128,
            ExpertsPerToken: r.OptionalInt("num_experts_per_tok") ?? 8,
            ExpertIntermediateSize: r.OptionalInt("moe_intermediate_size") ?? 768,
            NormalizeTopKProbabilities: r.OptionalBool("norm_topk_prob") ?? false,
            DecoderSparseStep: step,
            DenseLayers: r.OptionalIntList("mlp_only_layers") ?? [],
            RouterAuxLossCoefficient: r.OptionalDouble("router_aux_loss_coef") ?? 0.001,
            OutputRouterLogits: r.OptionalBool("output_router_logits") ?? false);
        if (experts.ExpertCount > 0 && experts.ExpertsPerToken is var k && (k < 1 || k > experts.ExpertCount))
            throw new InvalidDataException(
                $"{r.Source}: num_experts_per_tok = {k} must be between 1 and num_experts = {experts.ExpertCount}");
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 151_936,
            HiddenSize = hidden,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 6144,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? 4,
            HeadDim = r.OptionalInt("head_dim") ?? hidden / heads,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 32_768,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 10000.0),
            RopeScaling = RopeScaling.Read(r, rope),
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            AttentionBias = r.OptionalBool("attention_bias") ?? false,
            HiddenAct = r.OptionalString("hidden_act") ?? "silu",
            LayerTypes = types,
            SlidingWindow = window,
            Experts = experts,
        };
    }

    // MixtralConfig (transformers' configuration_mixtral.py): Mixtral-8x7B's defaults; head_dim read as MixtralAttention
    // does (getattr(config, "head_dim", hidden // heads)); the window, default none, applies to every layer; every layer
    // is sparse and renormalises its top-k weights.
    private static ModelConfig Mixtral(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.OptionalInt("hidden_size") ?? 4096;
        var heads = r.OptionalInt("num_attention_heads") ?? 32;
        var layers = r.OptionalInt("num_hidden_layers") ?? 32;
        var window = r.OptionalInt("sliding_window");
        var types = Uniform(layers, window is null ? FullAttention : SlidingAttention);
        var rope = SameRopeForEveryLayer(r, types);
        var experts = new MixtureOfExperts(
            ExpertCount: r.OptionalInt("num_local_experts") ?? 8,
            ExpertsPerToken: r.OptionalInt("num_experts_per_tok") ?? 2,
            ExpertIntermediateSize: r.OptionalInt("intermediate_size") ?? 14336,
            NormalizeTopKProbabilities: true,
            DecoderSparseStep: 1,
            DenseLayers: [],
            RouterAuxLossCoefficient: r.OptionalDouble("router_aux_loss_coef") ?? 0.001,
            OutputRouterLogits: r.OptionalBool("output_router_logits") ?? false)
        {
            RouterJitterNoise = r.OptionalDouble("router_jitter_noise") ?? 0.0,
        };
        if (experts.ExpertsPerToken < 1 || experts.ExpertsPerToken > experts.ExpertCount)
            throw new InvalidDataException(
                $"{r.Source}: num_experts_per_tok = {experts.ExpertsPerToken} must be between 1 and num_local_experts = {experts.ExpertCount}");
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 32000,
            HiddenSize = hidden,
            IntermediateSize = experts.ExpertIntermediateSize,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? 8,
            HeadDim = r.OptionalInt("head_dim") ?? hidden / heads,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 4096 * 32,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-5,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 1e6),
            RopeScaling = RopeScaling.Read(r, rope),
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            HiddenAct = r.OptionalString("hidden_act") ?? "silu",
            LayerTypes = types,
            SlidingWindow = window,
            Experts = experts,
            BosTokenId = r.Json.ContainsKey("bos_token_id") ? r.OptionalInt("bos_token_id") : 1,
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [2],
        };
    }

    // SmolLM3Config: no_rope_layers (1 = RoPE) defaults to a NoPE layer every no_rope_layer_interval layers; with
    // use_sliding_window the NoPE layers slide.
    private static (IReadOnlyList<string>, int?, IReadOnlyList<bool>?) SmolLM3Windows(ConfigReader r, int layers)
    {
        var interval = r.OptionalInt("no_rope_layer_interval") ?? 4;
        var rope = r.OptionalIntList("no_rope_layers")?.Select(v => v != 0).ToArray()
                   ?? Enumerable.Range(0, layers).Select(i => (i + 1) % interval != 0).ToArray();
        if (rope.Length < layers)
            throw new InvalidDataException($"{r.Source}: no_rope_layers has {rope.Length} entries for {layers} layers");
        var window = r.OptionalInt("sliding_window");
        var useSliding = r.OptionalBool("use_sliding_window") ?? false;
        var types = ExplicitLayerTypes(r, layers)
            ?? Enumerable.Range(0, layers).Select(i => useSliding && window is not null && !rope[i] ? SlidingAttention : FullAttention).ToArray();
        return (types, window, rope);
    }

    // Gemma2Config: its defaults are Gemma-2-2B's; the soft caps (50, 30) and the window (4096) apply unless config.json
    // sets them to null. Gemma2MLP reads hidden_activation only (hidden_act is ignored). Sliding layers are listed in
    // layer_types (transformers ≥ 4.53) or, in configs without it, are the even ones (Gemma2Attention: not layer_idx % 2).
    private static ModelConfig Gemma2(ConfigReader r, string architecture, string modelType)
    {
        var layers = r.OptionalInt("num_hidden_layers") ?? 26;
        var types = ExplicitLayerTypes(r, layers)
            ?? Enumerable.Range(0, layers).Select(i => i % 2 == 0 ? SlidingAttention : FullAttention).ToArray();
        RefuseBidirectional(r, "Gemma 2");
        var rope = SameRopeForEveryLayer(r, types);
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 256_000,
            HiddenSize = r.OptionalInt("hidden_size") ?? 2304,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 9216,
            NumLayers = layers,
            NumHeads = r.OptionalInt("num_attention_heads") ?? 8,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? 4,
            HeadDim = r.OptionalInt("head_dim") ?? 256,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 8192,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 10000.0),
            RopeScaling = RopeScaling.Read(r, rope),
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? true,
            AttentionBias = r.OptionalBool("attention_bias") ?? false,
            HiddenAct = r.OptionalString("hidden_activation") ?? "gelu_pytorch_tanh",
            QueryPreAttnScalar = r.OptionalDouble("query_pre_attn_scalar") ?? 256,
            AttnLogitSoftcapping = r.Json.ContainsKey("attn_logit_softcapping") ? r.OptionalDouble("attn_logit_softcapping") : 50.0,
            FinalLogitSoftcapping = r.Json.ContainsKey("final_logit_softcapping") ? r.OptionalDouble("final_logit_softcapping") : 30.0,
            LayerTypes = types,
            SlidingWindow = r.Json.ContainsKey("sliding_window") ? r.OptionalInt("sliding_window") : 4096,
            BosTokenId = r.Json.ContainsKey("bos_token_id") ? r.OptionalInt("bos_token_id") : 2,
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [1],
            PadTokenId = r.Json.ContainsKey("pad_token_id") ? r.OptionalInt("pad_token_id") : 0,
        };
    }

    // transformers' use_bidirectional_attention (EmbeddingGemma's setting) lets every token see every other.
    private static void RefuseBidirectional(ConfigReader r, string family)
    {
        if (r.OptionalBool("use_bidirectional_attention") == true)
            throw new NotSupportedException(
                $"{r.Source}: use_bidirectional_attention = true is not supported: {family} is implemented with causal attention only");
    }

    private static ModelConfig Gemma3Text(ConfigReader r, string architecture, string modelType)
    {
        var layers = r.OptionalInt("num_hidden_layers") ?? 26;
        var pattern = r.OptionalInt("sliding_window_pattern") ?? r.OptionalInt("_sliding_window_pattern") ?? 6;
        var types = ExplicitLayerTypes(r, layers)
            ?? Enumerable.Range(0, layers).Select(i => (i + 1) % pattern != 0 ? SlidingAttention : FullAttention).ToArray();
        var heads = r.OptionalInt("num_attention_heads") ?? 8;
        var (global, local) = Gemma3Rope(r);
        RefuseBidirectional(r, "Gemma 3");   // EmbeddingGemma's setting (which also halves the window each side)
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 262_208,
            HiddenSize = r.OptionalInt("hidden_size") ?? 2304,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 9216,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? 4,
            HeadDim = r.OptionalInt("head_dim") ?? 256,
            MaxPositionEmbeddings = r.OptionalInt("max_position_embeddings") ?? 131_072,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = RopeScaling.Theta(r, global, "rope_theta", 1_000_000.0),
            RopeScaling = RopeScaling.Read(r, global),
            RopeLocalBaseFreq = RopeScaling.Theta(r, local, "rope_local_base_freq", 10_000.0),
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? true,
            AttentionBias = r.OptionalBool("attention_bias") ?? false,
            HiddenAct = r.OptionalString("hidden_activation") ?? r.OptionalString("hidden_act") ?? "gelu_pytorch_tanh",
            QueryPreAttnScalar = r.OptionalDouble("query_pre_attn_scalar") ?? 256,
            AttnLogitSoftcapping = r.OptionalDouble("attn_logit_softcapping"),
            FinalLogitSoftcapping = r.OptionalDouble("final_logit_softcapping"),
            LayerTypes = types,
            SlidingWindow = r.Json.ContainsKey("sliding_window") ? r.OptionalInt("sliding_window") : 4096,
            BosTokenId = r.OptionalInt("bos_token_id") ?? 2,
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [1],
            PadTokenId = r.OptionalInt("pad_token_id") ?? 0,
        };
    }

    // Gemma3ForConditionalGeneration (4B/12B/27B): the text model alone, from text_config, for text-only fine-tuning.
    private static ModelConfig Gemma3FromMultimodal(ConfigReader r)
    {
        var text = r.Json["text_config"] is JsonObject t ? (JsonObject)t.DeepClone() : new JsonObject();
        foreach (var key in new[] { "torch_dtype", "dtype", "eos_token_id", "bos_token_id", "pad_token_id", "tie_word_embeddings", "initializer_range" })
            if (!text.ContainsKey(key) && r.Json[key] is { } value) text[key] = value.DeepClone();
        text["model_type"] = "gemma3_text";
        var config = Gemma3Text(new ConfigReader(text, r.Source + " (text_config)"), "Gemma3ForCausalLM", "gemma3_text");
        return config with { CheckpointArchitecture = "Gemma3ForConditionalGeneration", Raw = text };
    }

    private static ModelConfig Phi3(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.OptionalInt("hidden_size") ?? 3072;
        var heads = r.OptionalInt("num_attention_heads") ?? 32;
        var layers = r.OptionalInt("num_hidden_layers") ?? 32;
        var maxPositions = r.OptionalInt("max_position_embeddings") ?? 4096;
        var original = r.OptionalInt("original_max_position_embeddings") ?? 4096;
        var rope = SameRopeForEveryLayer(r, Uniform(layers, FullAttention));
        var scaling = RopeScaling.Read(r, rope);
        // Phi3Config always has original_max_position_embeddings (default 4096), and transformers takes it over the RoPE
        // settings' own: the switch point of longrope and, without a factor, the divisor of max_position_embeddings
        // in the default attention factor.
        if (scaling is { Type: "longrope" })
            scaling = scaling with
            {
                OriginalMaxPositionEmbeddings = original,
                Factor = rope!.Value.Settings["factor"] is null ? maxPositions / (double)original : scaling.Factor,
            };
        var window = r.OptionalInt("sliding_window");
        return Common(r, architecture, modelType) with
        {
            VocabSize = r.OptionalInt("vocab_size") ?? 32064,
            HiddenSize = hidden,
            IntermediateSize = r.OptionalInt("intermediate_size") ?? 8192,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? heads,
            HeadDim = r.OptionalInt("head_dim") ?? hidden / heads,
            MaxPositionEmbeddings = maxPositions,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-5,
            RopeTheta = RopeScaling.Theta(r, rope, "rope_theta", 10000.0),
            RopeScaling = scaling,
            // transformers 5 also keeps it in rope_parameters; the top-level field wins (standardize_rope_params).
            PartialRotaryFactor = r.OptionalDouble("partial_rotary_factor")
                                  ?? rope?.Settings["partial_rotary_factor"]?.GetValue<double>() ?? 1.0,
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? false,
            HiddenAct = r.OptionalString("hidden_act") ?? "silu",
            LayerTypes = Uniform(layers, window is null ? FullAttention : SlidingAttention),
            SlidingWindow = window,
            BosTokenId = r.Json.ContainsKey("bos_token_id") ? r.OptionalInt("bos_token_id") : 1,
            EosTokenIds = r.Json.ContainsKey("eos_token_id") ? r.IntOrIntList("eos_token_id") : [32000],
        };
    }

    private static ModelConfig Gpt2(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.RequiredInt("n_embd");
        var heads = r.RequiredInt("n_head");
        var layers = r.RequiredInt("n_layer");
        return Common(r, architecture, modelType == "" ? "gpt2" : modelType) with
        {
            VocabSize = r.RequiredInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = r.OptionalInt("n_inner") ?? 4 * hidden,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeads = heads,
            HeadDim = hidden / heads,
            MaxPositionEmbeddings = r.OptionalInt("n_positions") ?? r.OptionalInt("n_ctx") ?? 1024,
            NormEps = r.OptionalDouble("layer_norm_epsilon") ?? 1e-5,
            TieWordEmbeddings = r.OptionalBool("tie_word_embeddings") ?? true,
            AttentionBias = true,
            MlpBias = true,
            HiddenAct = r.OptionalString("activation_function") ?? "gelu_new",
            LayerTypes = Uniform(layers, FullAttention),
        };
    }

    /// <summary>Fields every family reads the same way; sizes are filled in by the family.</summary>
    private static ModelConfig Common(ConfigReader r, string architecture, string modelType) => new()
    {
        Architecture = architecture,
        ModelType = modelType,
        VocabSize = 0, HiddenSize = 0, IntermediateSize = 0, NumLayers = 0, NumHeads = 0, NumKeyValueHeads = 0, HeadDim = 0,
        MaxPositionEmbeddings = 0,
        BosTokenId = r.OptionalInt("bos_token_id"),
        EosTokenIds = r.IntOrIntList("eos_token_id"),
        PadTokenId = r.OptionalInt("pad_token_id"),
        TorchDtype = r.OptionalString("torch_dtype") ?? r.OptionalString("dtype"),
        Raw = r.Json,
    };

    /// <summary>
    /// The RoPE settings of a family whose layers all rotate alike: settings keyed by layer type must agree for every
    /// layer type the model has (transformers would give each its own RoPE, which these families do not implement).
    /// </summary>
    private static (string Path, JsonObject Settings)? SameRopeForEveryLayer(ConfigReader r, IReadOnlyList<string> layerTypes)
    {
        var types = layerTypes.Distinct().ToArray();
        var first = RopeScaling.Section(r, types.Length > 0 ? types[0] : FullAttention);
        foreach (var type in types.Skip(1))
            if (RopeScaling.Section(r, type) is { } other && first is { } f && !JsonNode.DeepEquals(f.Settings, other.Settings))
                throw new NotSupportedException(
                    $"{r.Source}: {f.Path} and {other.Path} differ; this architecture rotates every layer alike");
        return first;
    }

    /// <summary>
    /// Gemma3TextConfig's RoPE: the global (full-attention) layers take rope_theta and rope_scaling, the local (sliding)
    /// layers rope_local_base_freq without scaling; transformers 5 writes both as rope_parameters keyed by layer type.
    /// Scaling on the local layers is refused, as it is not implemented.
    /// </summary>
    private static ((string Path, JsonObject Settings)? Global, (string Path, JsonObject Settings)? Local) Gemma3Rope(ConfigReader r)
    {
        if (RopeScaling.Source(r) is not var (key, settings)) return (null, null);
        if (key == "rope_scaling") return ((key, settings), null);
        if (!RopeScaling.IsPerLayerType(settings))
            throw new InvalidDataException(
                $"{r.Source}: rope_parameters of a Gemma 3 model must be keyed by layer type ({FullAttention}, {SlidingAttention})");
        (string, JsonObject)? Entry(string type) => settings[type] is JsonObject o ? ($"{key}.{type}", o) : null;
        var local = Entry(SlidingAttention);
        if (local is var (path, localSettings) && RopeScaling.Read(r, local) is { Type: not "default" } localScaling)
            throw new NotSupportedException(
                $"{r.Source}: {path}.rope_type '{localScaling.Type}' is not supported: sliding-attention layers rotate without scaling here");
        return (Entry(FullAttention), local);
    }

    private static IReadOnlyList<string>? ExplicitLayerTypes(ConfigReader r, int layers)
    {
        var types = r.OptionalStringList("layer_types");
        if (types is null) return null;
        if (types.Count != layers)
            throw new InvalidDataException($"{r.Source}: layer_types has {types.Count} entries for num_hidden_layers = {layers}");
        foreach (var t in types)
            if (t is not (FullAttention or SlidingAttention))
                throw new NotSupportedException($"{r.Source}: layer type '{t}' is not supported ({FullAttention}, {SlidingAttention} are)");
        return types;
    }

    private static IReadOnlyList<string> Uniform(int layers, string type) => Enumerable.Repeat(type, layers).ToArray();
}
