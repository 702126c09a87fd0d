using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// Gemma 3 text model (transformers' <c>Gemma3ForCausalLM</c>, model_type gemma3_text; also the language model of a
/// Gemma3ForConditionalGeneration checkpoint): embeddings scaled by √hidden in the weight dtype, (1 + w) RMSNorms in
/// float32 before and after both attention and MLP, per-head q/k norms, scores scaled by query_pre_attn_scalar^-½,
/// sliding-window local layers with their own RoPE base and full global layers with rope_theta + rope_scaling, a
/// GELU-tanh gated MLP, and optional attention / final-logit soft-capping.
/// </summary>
public sealed class Gemma3ForCausalLM : CausalLanguageModel
{
    public readonly Gemma3TextModel model;
    public readonly nn.Module<Tensor, Tensor>? lm_head;

    public Gemma3ForCausalLM(ModelConfig config) : base(nameof(Gemma3ForCausalLM), config)
    {
        model = new Gemma3TextModel(config);
        if (!config.TieWordEmbeddings)
            lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    public override Tensor EmbedTokens(Tensor inputIds) => model.Embed(inputIds);

    protected override Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context) =>
        model.Forward(inputsEmbeds, context, CheckpointLayersNow);

    public override Tensor ComputeLogits(Tensor hidden)
    {
        var logits = lm_head is null ? F.linear(hidden, model.embed_tokens.weight!) : lm_head.forward(hidden);
        if (Config.FinalLogitSoftcapping is not { } cap) return logits;
        using var scope = NewDisposeScope();
        return ((logits / cap).tanh() * cap).MoveToOuterDisposeScope();
    }

    public override Tensor EmbeddingWeight => model.embed_tokens.weight!;

    public override string EmbeddingParameterName => "model.embed_tokens.weight";

    public override bool HeadIsTrainable => lm_head switch
    {
        null => model.embed_tokens.weight!.requires_grad,
        Linear linear => linear.weight!.requires_grad,
        _ => true,
    };

    public override bool IsIgnorableCheckpointTensor(string name) =>
        name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal) ||
        name.EndsWith("rotary_emb_local.inv_freq", StringComparison.Ordinal) ||
        name.EndsWith("embed_tokens.embed_scale", StringComparison.Ordinal);
}

public sealed class Gemma3TextModel : nn.Module
{
    public readonly Embedding embed_tokens;
    public readonly ModuleList<Gemma3DecoderLayer> layers;
    public readonly GemmaRmsNorm norm;
    private readonly float embedScale;
    private readonly DeviceCached<RotaryEmbedding> globalRotary;
    private readonly DeviceCached<RotaryEmbedding> localRotary;

    public Gemma3TextModel(ModelConfig config) : base(nameof(Gemma3TextModel))
    {
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = new ModuleList<Gemma3DecoderLayer>(
            Enumerable.Range(0, config.NumLayers).Select(i => new Gemma3DecoderLayer(config, i)).ToArray());
        norm = new GemmaRmsNorm(config.HiddenSize, config.NormEps);
        embedScale = (float)Math.Sqrt(config.HiddenSize);
        globalRotary = new DeviceCached<RotaryEmbedding>(device => RotaryEmbedding.ForConfig(config, device));
        // Local layers: rope_local_base_freq and no scaling (transformers copies the config with rope_type "default").
        localRotary = new DeviceCached<RotaryEmbedding>(device =>
            new RotaryEmbedding(config.RotaryDim, config.RopeLocalBaseFreq ?? config.RopeTheta, null, device));
        RegisterComponents();
    }

    /// <summary>Gemma3TextScaledWordEmbedding: the lookup times √hidden, the scale first rounded to the weight dtype.</summary>
    public Tensor Embed(Tensor inputIds)
    {
        using var scope = NewDisposeScope();
        var weight = embed_tokens.weight!;
        var scale = tensor(embedScale, ScalarType.Float32, weight.device).to(weight.dtype);
        return (embed_tokens.forward(inputIds) * scale).MoveToOuterDisposeScope();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, bool checkpointLayers = false)
    {
        using var scope = NewDisposeScope();
        var global = globalRotary.For(x.device).Angles(ctx.PositionIds, x.dtype);
        var local = localRotary.For(x.device).Angles(ctx.PositionIds, x.dtype);
        if (checkpointLayers)   // the backward recomputes layers after this scope has ended
        {
            global = (global.Cos.DetachFromDisposeScope(), global.Sin.DetachFromDisposeScope());
            local = (local.Cos.DetachFromDisposeScope(), local.Sin.DetachFromDisposeScope());
        }
        foreach (var layer in layers)
        {
            var angles = layer.IsSliding ? local : global;
            x = checkpointLayers ? ActivationCheckpoint.Run(input => layer.Forward(input, ctx, angles), x) : layer.Forward(x, ctx, angles);
        }
        if (ctx.Cache is { } cache) cache.Advance((int)x.shape[1]);
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

public sealed class Gemma3DecoderLayer : nn.Module
{
    public readonly Gemma3Attention self_attn;
    public readonly LlamaMlp mlp;   // gate/up/down with the config's gelu_pytorch_tanh
    public readonly GemmaRmsNorm input_layernorm;
    public readonly GemmaRmsNorm post_attention_layernorm;
    public readonly GemmaRmsNorm pre_feedforward_layernorm;
    public readonly GemmaRmsNorm post_feedforward_layernorm;

    public Gemma3DecoderLayer(ModelConfig config, int layerIndex) : base(nameof(Gemma3DecoderLayer))
    {
        self_attn = new Gemma3Attention(config, layerIndex);
        mlp = new LlamaMlp(config);
        input_layernorm = new GemmaRmsNorm(config.HiddenSize, config.NormEps);
        post_attention_layernorm = new GemmaRmsNorm(config.HiddenSize, config.NormEps);
        pre_feedforward_layernorm = new GemmaRmsNorm(config.HiddenSize, config.NormEps);
        post_feedforward_layernorm = new GemmaRmsNorm(config.HiddenSize, config.NormEps);
        IsSliding = config.LayerTypes.Count > layerIndex && config.LayerTypes[layerIndex] == ModelConfig.SlidingAttention;
        RegisterComponents();
    }

    /// <summary>A local layer: sliding window and the local RoPE base.</summary>
    public bool IsSliding { get; }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor Sin) angles)
    {
        using var scope = NewDisposeScope();
        x = x + post_attention_layernorm.forward(self_attn.Forward(input_layernorm.forward(x), ctx, angles));
        x = x + post_feedforward_layernorm.forward(mlp.forward(pre_feedforward_layernorm.forward(x)));
        return x.MoveToOuterDisposeScope();
    }
}

public sealed class Gemma3Attention : nn.Module
{
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    public readonly GemmaRmsNorm q_norm;
    public readonly GemmaRmsNorm k_norm;
    private readonly int numHeads, numKvHeads, headDim, layerIndex;
    private readonly AttentionSettings settings;

    public Gemma3Attention(ModelConfig config, int layerIndex) : base(nameof(Gemma3Attention))
    {
        (numHeads, numKvHeads, headDim, this.layerIndex) = (config.NumHeads, config.NumKeyValueHeads, config.HeadDim, layerIndex);
        q_proj = nn.Linear(config.HiddenSize, numHeads * headDim, hasBias: config.AttentionBias);
        k_proj = nn.Linear(config.HiddenSize, numKvHeads * headDim, hasBias: config.AttentionBias);
        v_proj = nn.Linear(config.HiddenSize, numKvHeads * headDim, hasBias: config.AttentionBias);
        o_proj = nn.Linear(numHeads * headDim, config.HiddenSize, hasBias: config.AttentionBias);
        q_norm = new GemmaRmsNorm(headDim, config.NormEps);
        k_norm = new GemmaRmsNorm(headDim, config.NormEps);
        settings = new AttentionSettings(
            SlidingWindow: config.SlidingWindowOf(layerIndex),
            Scale: Math.Pow(config.QueryPreAttnScalar ?? headDim, -0.5),
            SoftCap: config.AttnLogitSoftcapping);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor Sin) angles)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        var q = q_norm.forward(q_proj.forward(x).view(b, t, numHeads, headDim).transpose(1, 2));     // (B, nh, T, hd)
        var k = k_norm.forward(k_proj.forward(x).view(b, t, numKvHeads, headDim).transpose(1, 2));   // (B, nkv, T, hd)
        var v = v_proj.forward(x).view(b, t, numKvHeads, headDim).transpose(1, 2);                   // (B, nkv, T, hd)
        (q, k) = RotaryEmbedding.Apply(q, k, angles);
        return o_proj.forward(Attention.Compute(q, k, v, ctx, layerIndex, settings));
    }
}
