using SharpTune.Models;

namespace SharpTune.Advisors.Memory;

/// <summary>One weight matrix of a linear layer (nn.Linear or GPT-2's Conv1D), named by its module path.</summary>
public sealed record LinearLayerShape(string Path, long InFeatures, long OutFeatures, bool HasBias)
{
    /// <summary>Weight plus bias elements.</summary>
    public long Parameters => InFeatures * OutFeatures + (HasBias ? OutFeatures : 0);

    /// <summary>The module name without its path (q_proj, c_attn…), as target_modules lists name it.</summary>
    public string LeafName => Path[(Path.LastIndexOf('.') + 1)..];
}

/// <summary>
/// One fused expert parameter (E, in, out) of a mixture-of-experts layer, named by its parameter path
/// (model.layers.0.mlp.experts.gate_up_proj): what LoRA's target_parameters select.
/// </summary>
internal sealed record ExpertParameterShape(string Path, long Experts, long InFeatures, long OutFeatures);

/// <summary>
/// The parameter shapes of an architecture computed from its config alone, with the module paths the model classes
/// register (so target_modules select the same layers here as on a loaded model), without building any tensor.
/// <paramref name="LayerNormBlocks"/> marks GPT-2, GPT-NeoX, Phi-1/2 and StableLM blocks: LayerNorms with biases, q/k/v
/// projections (fused, or three) and an MLP without the decoder's kept products (GELU's two matrices, StableLM's SwiGLU),
/// which the activation accounting counts apart from the RMSNorm/SwiGLU decoders.
/// </summary>
public sealed record ModelLayout(ModelConfig Config, IReadOnlyList<LinearLayerShape> Linears, long OtherParameters, bool LayerNormBlocks)
{
    /// <summary>The module path every decoder layer's name starts with (model.layers., transformer.h., gpt_neox.layers.).</summary>
    internal string LayerPrefix => Config.Architecture switch
    {
        "GPT2LMHeadModel" => "transformer.h.",
        "GPTNeoXForCausalLM" => "gpt_neox.layers.",
        _ => "model.layers.",
    };

    /// <summary>Every parameter of the model (a tied output head counted once).</summary>
    public long TotalParameters => Linears.Sum(l => l.Parameters) + OtherParameters;

    /// <summary>
    /// Parameters that take part in matrix multiplies per token: all linear layers plus a tied head; of a
    /// mixture-of-experts layer's experts, only the k a token is routed to.
    /// </summary>
    public long MatmulParameters =>
        (long)Linears.Sum(l => l.InFeatures * l.OutFeatures * ActiveShare(l)) + (Config.TieWordEmbeddings ? (long)Config.VocabSize * Config.HiddenSize : 0)
        + OtherMatmulParameters;

    /// <summary>
    /// Weights among <see cref="OtherParameters"/> that a token still multiplies through: gpt-oss's router and the k
    /// routed experts' fused 3D projections (parameters, not linear layers: no target_modules entry or bitsandbytes
    /// quantization reaches them, so they stay out of <see cref="Linears"/>).
    /// </summary>
    internal long OtherMatmulParameters { get; init; }

    /// <summary>
    /// The fused expert parameters among <see cref="OtherParameters"/> that LoRA's target_parameters can select (gpt-oss's
    /// gate_up_proj and down_proj, as LoraExpertParameters.TargetableParameters); empty for other architectures.
    /// </summary>
    internal IReadOnlyList<ExpertParameterShape> ExpertParameters { get; init; } = [];

    private double ActiveShare(LinearLayerShape linear) =>
        Config.Experts is { } moe && linear.Path.Contains(".experts.", StringComparison.Ordinal) ? moe.ExpertsPerToken / (double)moe.ExpertCount : 1.0;

    /// <summary>The layout of <paramref name="config"/>; throws for an architecture it does not describe.</summary>
    public static ModelLayout Of(ModelConfig config) => config.Architecture switch
    {
        var architecture when LlamaLayouts.Contains(architecture) => Llama(config),
        "Phi3ForCausalLM" => Phi3(config),
        "GPT2LMHeadModel" => Gpt2(config),
        "GPTNeoXForCausalLM" => GptNeoX(config),
        "PhiForCausalLM" => Phi(config),
        "StableLmForCausalLM" => StableLm(config),
        "GptOssForCausalLM" => GptOss(config),
        _ => throw new NotSupportedException(
            $"architecture '{config.Architecture}' is not supported by the estimator; supported: {string.Join(", ", [.. LlamaLayouts, .. OwnLayouts])}"),
    };

    // Architectures laid out as Llama's decoder (with their own norms, biases and experts), and those with their own layout.
    private static readonly string[] LlamaLayouts =
    [
        "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "SmolLM3ForCausalLM", "Qwen3ForCausalLM", "GraniteForCausalLM",
        "Olmo2ForCausalLM", "Olmo3ForCausalLM", "GemmaForCausalLM", "Qwen3MoeForCausalLM", "MixtralForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
    ];

    private static readonly string[] OwnLayouts =
        ["Phi3ForCausalLM", "GPT2LMHeadModel", "GPTNeoXForCausalLM", "PhiForCausalLM", "StableLmForCausalLM", "GptOssForCausalLM"];

    private static ModelLayout Llama(ModelConfig c)
    {
        long d = c.HiddenSize, attention = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        var oBias = c.AttentionBias && c.Architecture != "Qwen2ForCausalLM";   // Qwen2's bias is on q/k/v only
        var linears = new List<LinearLayerShape>();
        for (var i = 0; i < c.NumLayers; i++)
        {
            var p = $"model.layers.{i}";
            AddSeparateAttention(linears, c, p, "o_proj", c.AttentionBias, oBias);
            if (c.Experts is { } moe && moe.IsSparse(i))
            {
                // The sparse block: the router and every expert's SwiGLU projections (Mixtral: block_sparse_moe, w1 w3 w2).
                var mixtral = c.Architecture == "MixtralForCausalLM";
                var (block, gate, up, down) = mixtral ? ("block_sparse_moe", "w1", "w3", "w2") : ("mlp", "gate_proj", "up_proj", "down_proj");
                linears.Add(new($"{p}.{block}.gate", d, moe.ExpertCount, false));
                for (var e = 0; e < moe.ExpertCount; e++)
                {
                    linears.Add(new($"{p}.{block}.experts.{e}.{gate}", d, moe.ExpertIntermediateSize, c.MlpBias && !mixtral));
                    linears.Add(new($"{p}.{block}.experts.{e}.{up}", d, moe.ExpertIntermediateSize, c.MlpBias && !mixtral));
                    linears.Add(new($"{p}.{block}.experts.{e}.{down}", moe.ExpertIntermediateSize, d, c.MlpBias && !mixtral));
                }
                continue;
            }
            AddGatedMlp(linears, c, p, c.MlpBias);
        }
        if (!c.TieWordEmbeddings) linears.Add(new("lm_head", d, c.VocabSize, false));
        // embeddings, the RMSNorms of each layer (Gemma 2 and 3 have four, OLMo 2 two after the blocks), q/k norms (per
        // head in Qwen3 and Gemma 3, over all heads in OLMo 2 and 3), final norm
        var isGemma3 = c.Architecture == "Gemma3ForCausalLM";
        var fourNorms = isGemma3 || c.Architecture == "Gemma2ForCausalLM";
        var qkNormWidth = isGemma3 || c.Architecture is "Qwen3ForCausalLM" or "Qwen3MoeForCausalLM" ? 2L * c.HeadDim
            : c.Architecture is "Olmo2ForCausalLM" or "Olmo3ForCausalLM" ? attention + kv : 0;
        var other = (long)c.VocabSize * d + ((fourNorms ? 4L : 2L) * c.NumLayers + 1) * d + qkNormWidth * c.NumLayers;
        return new ModelLayout(c, linears, other, LayerNormBlocks: false);
    }

    // Phi-3: fused qkv_proj and gate_up_proj, no biases.
    private static ModelLayout Phi3(ModelConfig c)
    {
        long d = c.HiddenSize, attention = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim, ffn = c.IntermediateSize;
        var linears = new List<LinearLayerShape>();
        for (var i = 0; i < c.NumLayers; i++)
        {
            var p = $"model.layers.{i}";
            linears.Add(new($"{p}.self_attn.qkv_proj", d, attention + 2 * kv, false));
            linears.Add(new($"{p}.self_attn.o_proj", attention, d, false));
            linears.Add(new($"{p}.mlp.gate_up_proj", d, 2 * ffn, false));
            linears.Add(new($"{p}.mlp.down_proj", ffn, d, false));
        }
        if (!c.TieWordEmbeddings) linears.Add(new("lm_head", d, c.VocabSize, false));
        var other = (long)c.VocabSize * d + (2L * c.NumLayers + 1) * d;
        return new ModelLayout(c, linears, other, LayerNormBlocks: false);
    }

    private static ModelLayout Gpt2(ModelConfig c)
    {
        long d = c.HiddenSize, ffn = c.IntermediateSize;
        var linears = new List<LinearLayerShape>();
        for (var i = 0; i < c.NumLayers; i++)
        {
            var p = $"transformer.h.{i}";
            linears.Add(new($"{p}.attn.c_attn", d, 3 * d, true));
            linears.Add(new($"{p}.attn.c_proj", d, d, true));
            linears.Add(new($"{p}.mlp.c_fc", d, ffn, true));
            linears.Add(new($"{p}.mlp.c_proj", ffn, d, true));
        }
        if (!c.TieWordEmbeddings) linears.Add(new("lm_head", d, c.VocabSize, false));
        // token and position embeddings, LayerNorm weight+bias twice per block and once at the end
        var other = (long)c.VocabSize * d + (long)c.MaxPositionEmbeddings * d + (4L * c.NumLayers + 2) * d;
        return new ModelLayout(c, linears, other, LayerNormBlocks: true);
    }

    // GPT-NeoX (modeling_gpt_neox.py): the fused query_key_value and dense (biases unless attention_bias is false),
    // dense_h_to_4h and dense_4h_to_h with biases, embed_out without one (absent when tied); two LayerNorms (weight and
    // bias) a layer and final_layer_norm; no learned positions (RoPE).
    private static ModelLayout GptNeoX(ModelConfig c)
    {
        long d = c.HiddenSize, ffn = c.IntermediateSize;
        var linears = new List<LinearLayerShape>();
        for (var i = 0; i < c.NumLayers; i++)
        {
            var p = $"gpt_neox.layers.{i}";
            linears.Add(new($"{p}.attention.query_key_value", d, 3 * d, c.AttentionBias));
            linears.Add(new($"{p}.attention.dense", d, d, c.AttentionBias));
            linears.Add(new($"{p}.mlp.dense_h_to_4h", d, ffn, true));
            linears.Add(new($"{p}.mlp.dense_4h_to_h", ffn, d, true));
        }
        if (!c.TieWordEmbeddings) linears.Add(new("embed_out", d, c.VocabSize, false));
        var other = (long)c.VocabSize * d + (4L * c.NumLayers + 2) * d;
        return new ModelLayout(c, linears, other, LayerNormBlocks: true);
    }

    // Phi-1/1.5/2 (modular_phi.py, modeling_phi.py): q_proj, k_proj and v_proj (k and v num_key_value_heads wide), dense,
    // fc1 and fc2, all with biases; one input_layernorm (weight and bias) a layer, with qk_layernorm a per-head
    // q_layernorm and k_layernorm (weight and bias, head_dim wide) too, and final_layernorm; lm_head with a bias, or when
    // tied only that bias (the weight is embed_tokens'); no learned positions (RoPE).
    private static ModelLayout Phi(ModelConfig c)
    {
        long d = c.HiddenSize, ffn = c.IntermediateSize;
        var linears = new List<LinearLayerShape>();
        for (var i = 0; i < c.NumLayers; i++)
        {
            var p = $"model.layers.{i}";
            AddSeparateAttention(linears, c, p, "dense", qkvBias: true, outputBias: true);
            linears.Add(new($"{p}.mlp.fc1", d, ffn, true));
            linears.Add(new($"{p}.mlp.fc2", ffn, d, true));
        }
        if (!c.TieWordEmbeddings) linears.Add(new("lm_head", d, c.VocabSize, true));
        var qkNorms = c.QkLayerNorm ? 4L * c.HeadDim * c.NumLayers : 0;
        var other = (long)c.VocabSize * d + (2L * c.NumLayers + 2) * d + qkNorms + (c.TieWordEmbeddings ? c.VocabSize : 0);
        return new ModelLayout(c, linears, other, LayerNormBlocks: true);
    }

    // StableLM (modeling_stablelm.py): q_proj, k_proj and v_proj (k and v num_key_value_heads wide; biases with
    // use_qkv_bias), o_proj without; the SwiGLU gate_proj, up_proj and down_proj without biases; input_layernorm (weight
    // and bias) a layer, post_attention_layernorm too unless use_parallel_residual; with qk_layernorm a LayerNorm without
    // bias per query and per key/value head (head_dim wide); the final norm (weight and bias); lm_head without bias,
    // absent when tied; no learned positions (RoPE).
    private static ModelLayout StableLm(ModelConfig c)
    {
        long d = c.HiddenSize, attention = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        var linears = new List<LinearLayerShape>();
        for (var i = 0; i < c.NumLayers; i++)
        {
            var p = $"model.layers.{i}";
            AddSeparateAttention(linears, c, p, "o_proj", c.AttentionBias, outputBias: false);
            AddGatedMlp(linears, c, p, bias: false);
        }
        if (!c.TieWordEmbeddings) linears.Add(new("lm_head", d, c.VocabSize, false));
        var normsPerLayer = c.UseParallelResidual == true ? 2L : 4L;   // weight and bias of one or two LayerNorms
        var qkNorms = c.QkLayerNorm ? (attention + kv) * c.NumLayers : 0;
        var other = (long)c.VocabSize * d + (normsPerLayer * c.NumLayers + 2) * d + qkNorms;
        return new ModelLayout(c, linears, other, LayerNormBlocks: true);
    }

    // gpt-oss (modeling_gpt_oss.py): q_proj, k_proj, v_proj and o_proj (biases with attention_bias) and one sink logit per
    // query head (self_attn.sinks); the MLP's router (weight E × hidden and bias E) and experts' fused gate_up_proj
    // (E, hidden, 2·I) with its bias (E, 2·I) and down_proj (E, I, hidden) with its bias (E, hidden), which are parameters
    // rather than linear layers (no LoRA target, not quantized) and so count among the other parameters; input_layernorm
    // and post_attention_layernorm (RMSNorm weights) a layer and the final norm; lm_head without bias, absent when tied.
    // An MXFP4 folder loads its experts dequantized, so it counts as those full-precision parameters.
    private static ModelLayout GptOss(ModelConfig c)
    {
        long d = c.HiddenSize;
        var moe = c.Experts ?? throw new InvalidDataException("a gpt-oss config without its experts");
        long experts = moe.ExpertCount, ffn = moe.ExpertIntermediateSize;
        var linears = new List<LinearLayerShape>();
        for (var i = 0; i < c.NumLayers; i++)
            AddSeparateAttention(linears, c, $"model.layers.{i}", "o_proj", c.AttentionBias, c.AttentionBias);
        if (!c.TieWordEmbeddings) linears.Add(new("lm_head", d, c.VocabSize, false));
        var router = experts * d + experts;
        var expertWeights = experts * (d * 2 * ffn + ffn * d);
        var expertBiases = experts * (2 * ffn + d);
        var perLayer = c.NumHeads + 2 * d + router + expertWeights + expertBiases;
        var other = (long)c.VocabSize * d + perLayer * c.NumLayers + d;
        // Per token: the router's weight and the fused weights of the k experts the token is routed to.
        var activeExperts = (long)moe.ExpertsPerToken * (d * 2 * ffn + ffn * d);
        var expertParameters = Enumerable.Range(0, c.NumLayers).SelectMany(i => new ExpertParameterShape[]
        {
            new($"model.layers.{i}.mlp.experts.gate_up_proj", experts, d, 2 * ffn),
            new($"model.layers.{i}.mlp.experts.down_proj", experts, ffn, d),
        }).ToArray();
        return new ModelLayout(c, linears, other, LayerNormBlocks: false)
        {
            OtherMatmulParameters = (experts * d + activeExperts) * c.NumLayers, ExpertParameters = expertParameters,
        };
    }

    // Layer p's separate q_proj, k_proj and v_proj (k and v num_key_value_heads wide) and its output projection.
    private static void AddSeparateAttention(List<LinearLayerShape> linears, ModelConfig c, string p, string output, bool qkvBias, bool outputBias)
    {
        long d = c.HiddenSize, attention = (long)c.NumHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        linears.Add(new($"{p}.self_attn.q_proj", d, attention, qkvBias));
        linears.Add(new($"{p}.self_attn.k_proj", d, kv, qkvBias));
        linears.Add(new($"{p}.self_attn.v_proj", d, kv, qkvBias));
        linears.Add(new($"{p}.self_attn.{output}", attention, d, outputBias));
    }

    // Layer p's SwiGLU MLP: gate_proj, up_proj (hidden → intermediate) and down_proj.
    private static void AddGatedMlp(List<LinearLayerShape> linears, ModelConfig c, string p, bool bias)
    {
        long d = c.HiddenSize, ffn = c.IntermediateSize;
        linears.Add(new($"{p}.mlp.gate_proj", d, ffn, bias));
        linears.Add(new($"{p}.mlp.up_proj", d, ffn, bias));
        linears.Add(new($"{p}.mlp.down_proj", ffn, d, bias));
    }
}
