using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// Qwen3 (transformers' <c>Qwen3ForCausalLM</c>): the Llama decoder with a per-head RMSNorm on queries and keys
/// (<c>q_norm</c>/<c>k_norm</c>, applied before RoPE), a head_dim independent of hidden / heads, no q/k/v bias by
/// default, and sliding windows on the layers from max_window_layers on when use_sliding_window is set.
/// </summary>
public sealed class Qwen3ForCausalLM : CausalLanguageModel
{
    public readonly Qwen3Model model;
    public readonly nn.Module<Tensor, Tensor>? lm_head;

    public Qwen3ForCausalLM(ModelConfig config) : base(nameof(Qwen3ForCausalLM), config)
    {
        model = new Qwen3Model(config);
        if (!config.TieWordEmbeddings)
            lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
    }

    public override Tensor EmbedTokens(Tensor inputIds) => model.embed_tokens.forward(inputIds);

    protected override Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context) =>
        model.Forward(inputsEmbeds, context, CheckpointLayersNow);

    public override Tensor ComputeLogits(Tensor hidden) =>
        lm_head is null ? F.linear(hidden, model.embed_tokens.weight!) : lm_head.forward(hidden);

    public override Tensor EmbeddingWeight => model.embed_tokens.weight!;

    public override string EmbeddingParameterName => "model.embed_tokens.weight";

    public override bool HeadIsTrainable => lm_head switch
    {
        null => model.embed_tokens.weight!.requires_grad,
        Linear linear => linear.weight!.requires_grad,
        _ => true,
    };

    public override bool IsIgnorableCheckpointTensor(string name) =>
        name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal);
}

public sealed class Qwen3Model : nn.Module
{
    public readonly Embedding embed_tokens;
    public readonly ModuleList<Qwen3DecoderLayer> layers;
    public readonly RmsNorm norm;
    private readonly DeviceCached<RotaryEmbedding> rotary;

    public Qwen3Model(ModelConfig config) : base(nameof(Qwen3Model))
    {
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = new ModuleList<Qwen3DecoderLayer>(
            Enumerable.Range(0, config.NumLayers).Select(i => new Qwen3DecoderLayer(config, i)).ToArray());
        norm = new RmsNorm(config.HiddenSize, config.NormEps);
        rotary = new DeviceCached<RotaryEmbedding>(device => RotaryEmbedding.ForConfig(config, device));
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, bool checkpointLayers = false)
    {
        using var scope = NewDisposeScope();
        var angles = rotary.For(x.device).Angles(ctx.PositionIds, x.dtype);   // shared by every layer
        if (checkpointLayers)   // the backward recomputes layers after this scope has ended
            angles = (angles.Cos.DetachFromDisposeScope(), angles.Sin.DetachFromDisposeScope());
        foreach (var layer in layers)
            x = checkpointLayers ? ActivationCheckpoint.Run(input => layer.Forward(input, ctx, angles), x) : layer.Forward(x, ctx, angles);
        if (ctx.Cache is { } cache) cache.Advance((int)x.shape[1]);
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

public sealed class Qwen3DecoderLayer : nn.Module
{
    public readonly Qwen3Attention self_attn;
    public readonly LlamaMlp mlp;
    public readonly RmsNorm input_layernorm;
    public readonly RmsNorm post_attention_layernorm;

    public Qwen3DecoderLayer(ModelConfig config, int layerIndex) : base(nameof(Qwen3DecoderLayer))
    {
        self_attn = new Qwen3Attention(config, layerIndex);
        mlp = new LlamaMlp(config);
        input_layernorm = new RmsNorm(config.HiddenSize, config.NormEps);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.NormEps);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor Sin) angles)
    {
        using var scope = NewDisposeScope();
        x = x + self_attn.Forward(input_layernorm.forward(x), ctx, angles);
        x = x + mlp.forward(post_attention_layernorm.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

public sealed class Qwen3Attention : nn.Module
{
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    public readonly RmsNorm q_norm;   // over head_dim, per head
    public readonly RmsNorm k_norm;
    private readonly int numHeads, numKvHeads, headDim, layerIndex;
    private readonly AttentionSettings settings;

    public Qwen3Attention(ModelConfig config, int layerIndex) : base(nameof(Qwen3Attention))
    {
        (numHeads, numKvHeads, headDim, this.layerIndex) = (config.NumHeads, config.NumKeyValueHeads, config.HeadDim, layerIndex);
        q_proj = nn.Linear(config.HiddenSize, numHeads * headDim, hasBias: config.AttentionBias);
        k_proj = nn.Linear(config.HiddenSize, numKvHeads * headDim, hasBias: config.AttentionBias);
        v_proj = nn.Linear(config.HiddenSize, numKvHeads * headDim, hasBias: config.AttentionBias);
        o_proj = nn.Linear(numHeads * headDim, config.HiddenSize, hasBias: config.AttentionBias);
        q_norm = new RmsNorm(headDim, config.NormEps);
        k_norm = new RmsNorm(headDim, config.NormEps);
        settings = new AttentionSettings(SlidingWindow: config.SlidingWindowOf(layerIndex));
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor Sin) angles)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        var q = q_norm.forward(q_proj.forward(x).view(b, t, numHeads, headDim)).transpose(1, 2);     // (B, nh, T, hd)
        var k = k_norm.forward(k_proj.forward(x).view(b, t, numKvHeads, headDim)).transpose(1, 2);   // (B, nkv, T, hd)
        var v = v_proj.forward(x).view(b, t, numKvHeads, headDim).transpose(1, 2);                   // (B, nkv, T, hd)
        (q, k) = RotaryEmbedding.Apply(q, k, angles);
        return o_proj.forward(Attention.Compute(q, k, v, ctx, layerIndex, settings));
    }
}
