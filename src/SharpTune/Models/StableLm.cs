using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// StableLM (transformers' <c>StableLmForCausalLM</c>, model_type stablelm: StableLM-3B-4E1T, StableLM-2 1.6B/12B,
/// StableLM-Zephyr, StableCode), as modeling_stablelm.py defines it (huggingface/transformers 00dcc6dd): LayerNorms
/// with biases, q/k/v projections with biases when use_qkv_bias and an o_proj without, optional per-head LayerNorms on
/// queries and keys (qk_layernorm: one LayerNorm without bias per head), RoPE on the first partial_rotary_factor of
/// each head, a SiLU-gated MLP without biases, parallel (x + attn(ln(x)) + mlp(ln(x))) or sequential residuals, a final
/// LayerNorm and an lm_head without bias. While training, hidden_dropout applies to the MLP's output; attention_dropout
/// is not implemented, so a non-zero one is refused for training. The layers run through <see cref="RotaryLayerStack"/>
/// as GPT-NeoX's and Phi's do: decoding uses the shared single-query attention, layer by layer (<see cref="DecodeLayerStack"/>
/// covers the RMSNorm <see cref="DecoderModel"/> only).
/// </summary>
public sealed class StableLmForCausalLM : CausalLanguageModel
{
    public readonly StableLmModel model;
    public readonly nn.Module<Tensor, Tensor>? lm_head;   // (C → V) without bias; absent when tied or for a classifier

    public StableLmForCausalLM(ModelConfig config) : base(nameof(StableLmForCausalLM), config)
    {
        model = new StableLmModel(config);
        if (!config.TieWordEmbeddings && !config.WithoutOutputHead) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    protected override Tensor LookUpEmbeddings(Tensor inputIds) => model.embed_tokens.forward(inputIds);

    protected override Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context) =>
        model.Forward(inputsEmbeds, context, CheckpointedLayersNow);

    public override Tensor ComputeLogits(Tensor hidden)
    {
        if (UntiedOutputHead is { } head) return DenseMatVec.Forward(head, hidden);
        if (!Config.TieWordEmbeddings)
            throw new InvalidOperationException("this StableLM model was built without an output head (for sequence classification): it computes no vocabulary logits");
        return model.embed_tokens.TiedLogits(hidden);
    }

    public override Tensor EmbeddingWeight => model.embed_tokens.weight!;

    internal override TokenEmbedding InputEmbedding => model.embed_tokens;

    internal override nn.Module<Tensor, Tensor>? UntiedOutputHead => lm_head;

    public override bool HeadIsTrainable => OutputProjectionTakesGradients;

    // Older transformers kept RoPE's inv_freq as a persistent buffer; it is rebuilt here.
    public override bool IsIgnorableCheckpointTensor(string name) =>
        name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal) ||
        (Config.TieWordEmbeddings && name == OutputHeadParameterName) ||
        (Config.WithoutOutputHead && name.StartsWith("lm_head.", StringComparison.Ordinal));   // a causal-LM checkpoint read as a classifier
}

/// <summary>StableLmModel: embed_tokens, the layers (through <see cref="RotaryLayerStack"/>), norm (a LayerNorm with bias).</summary>
public sealed class StableLmModel : nn.Module
{
    public readonly TokenEmbedding embed_tokens;
    public readonly ModuleList<StableLmDecoderLayer> layers;
    public readonly LayerNorm norm;
    private readonly DeviceCached<RotaryEmbedding> rotary;
    private readonly double attentionDropout;

    public StableLmModel(ModelConfig config) : base(nameof(StableLmModel))
    {
        embed_tokens = new TokenEmbedding(config.VocabSize, config.HiddenSize);
        attentionDropout = RotaryLayerStack.DropoutProbability(config, "attention_dropout");
        layers = new ModuleList<StableLmDecoderLayer>(Enumerable.Range(0, config.NumLayers).Select(i => new StableLmDecoderLayer(config, i)).ToArray());
        norm = nn.LayerNorm(config.HiddenSize, config.NormEps);
        rotary = new DeviceCached<RotaryEmbedding>(device => RotaryEmbedding.ForConfig(config, device));
        RegisterComponents();
    }

    /// <summary>Embeddings (B, T, C) → final hidden states (B, T, C); advances the cache, if any, by T.</summary>
    /// <exception cref="NotSupportedException">Training (train mode) with a non-zero attention_dropout.</exception>
    public Tensor Forward(Tensor x, ForwardContext ctx, int checkpointedLayers = 0)
    {
        RotaryLayerStack.RefuseAttentionDropoutWhileTraining(training, attentionDropout, "StableLM");
        using var scope = NewDisposeScope();
        x = RotaryLayerStack.Run(layers, (layer, input, angles) => layer.Forward(input, ctx, angles), rotary.For(x.device), x, ctx, checkpointedLayers);
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// StableLmDecoderLayer. use_parallel_residual: h = input_layernorm(x); x + attn(h) + mlp(h). Otherwise
/// h = x + attn(input_layernorm(x)), then h + mlp(post_attention_layernorm(h)), the only case with that second norm.
/// hidden_dropout drops the MLP's output (not the attention's) while training.
/// </summary>
public sealed class StableLmDecoderLayer : nn.Module
{
    public readonly LayerNorm input_layernorm;
    public readonly LayerNorm? post_attention_layernorm;   // sequential residual only
    public readonly StableLmAttention self_attn;
    public readonly LlamaMlp mlp;
    public readonly Dropout? dropout;   // hidden_dropout; absent when 0

    public StableLmDecoderLayer(ModelConfig config, int layerIndex) : base(nameof(StableLmDecoderLayer))
    {
        input_layernorm = nn.LayerNorm(config.HiddenSize, config.NormEps);
        if (config.UseParallelResidual != true) post_attention_layernorm = nn.LayerNorm(config.HiddenSize, config.NormEps);
        self_attn = new StableLmAttention(config, layerIndex);
        mlp = new LlamaMlp(config);
        if (RotaryLayerStack.DropoutProbability(config, "hidden_dropout") is > 0 and var p) dropout = nn.Dropout(p);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        var normed = input_layernorm.forward(x);
        var attended = self_attn.Forward(normed, ctx, angles);
        if (post_attention_layernorm is null)
            return (x + attended + Dropped(mlp.forward(normed))).MoveToOuterDisposeScope();   // transformers' order
        var h = x + attended;
        return (h + Dropped(mlp.forward(post_attention_layernorm.forward(h)))).MoveToOuterDisposeScope();
    }

    private Tensor Dropped(Tensor mlpOutput) => dropout?.forward(mlpOutput) ?? mlpOutput;
}

/// <summary>
/// StableLmAttention: q_proj, k_proj, v_proj (num_key_value_heads for k and v; biases with use_qkv_bias) viewed per head;
/// with qk_layernorm, each head of q and k through a LayerNorm of its own; then the first rotary dims rotate
/// (rotate_half), scores are scaled by head_dim^-½, and o_proj (no bias) projects back.
/// </summary>
public sealed class StableLmAttention : nn.Module
{
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    public readonly StableLmLayerNormPerHead? q_layernorm;   // present with qk_layernorm
    public readonly StableLmLayerNormPerHead? k_layernorm;
    private readonly int numHeads, numKeyValueHeads, headDim, layerIndex;

    public StableLmAttention(ModelConfig config, int layerIndex) : base(nameof(StableLmAttention))
    {
        (numHeads, numKeyValueHeads, headDim, this.layerIndex) = (config.NumHeads, config.NumKeyValueHeads, config.HeadDim, layerIndex);
        q_proj = nn.Linear(config.HiddenSize, numHeads * headDim, hasBias: config.AttentionBias);
        k_proj = nn.Linear(config.HiddenSize, numKeyValueHeads * headDim, hasBias: config.AttentionBias);
        v_proj = nn.Linear(config.HiddenSize, numKeyValueHeads * headDim, hasBias: config.AttentionBias);
        o_proj = nn.Linear(numHeads * headDim, config.HiddenSize, hasBias: false);
        if (config.QkLayerNorm)
        {
            q_layernorm = new StableLmLayerNormPerHead(headDim, numHeads, config.NormEps);
            k_layernorm = new StableLmLayerNormPerHead(headDim, numKeyValueHeads, config.NormEps);
        }
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        var headNorms = q_layernorm is null ? null : ((Func<Tensor, Tensor>, Func<Tensor, Tensor>)?)(q_layernorm.Forward, k_layernorm!.Forward);
        return SeparateQkvRotaryAttention.Forward(x, ctx, angles, (q_proj, k_proj, v_proj, o_proj), headNorms,
            numHeads, numKeyValueHeads, headDim, layerIndex).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// StableLmLayerNormPerHead: head n of (B, heads, T, head_dim) normalised over head_dim and scaled by norms.n.weight —
/// a LayerNorm of its own per head, without bias (transformers builds nn.LayerNorm(dim, eps, bias=False) per head).
/// </summary>
public sealed class StableLmLayerNormPerHead : nn.Module
{
    public readonly ModuleList<StableLmHeadNorm> norms;
    private readonly long headDim;
    private readonly double eps;

    public StableLmLayerNormPerHead(int headDim, int heads, double eps) : base(nameof(StableLmLayerNormPerHead))
    {
        (this.headDim, this.eps) = (headDim, eps);
        norms = new ModuleList<StableLmHeadNorm>(Enumerable.Range(0, heads).Select(_ => new StableLmHeadNorm(headDim)).ToArray());
        RegisterComponents();
    }

    /// <summary>One normalisation over every head at once, then each head's own weight (heads, head_dim) broadcast over T.</summary>
    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var weights = stack(norms.Select(n => (Tensor)n.weight).ToArray()).view(1, norms.Count, 1, headDim);
        return (nn.functional.layer_norm(x, [headDim], eps: eps) * weights).MoveToOuterDisposeScope();
    }
}

/// <summary>One head's LayerNorm weight (transformers' nn.LayerNorm(head_dim, bias=False) has no bias).</summary>
public sealed class StableLmHeadNorm : nn.Module
{
    public readonly Parameter weight;

    public StableLmHeadNorm(long headDim) : base(nameof(StableLmHeadNorm))
    {
        weight = new Parameter(ones(headDim));
        RegisterComponents();
    }
}
