using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// Phi-3 / Phi-3.5 / Phi-4-mini (transformers' <c>Phi3ForCausalLM</c>): the Llama decoder with fused projections —
/// <c>qkv_proj</c> (queries, then keys, then values along the output) and <c>gate_up_proj</c> (gate, then up) — RoPE
/// on the first partial_rotary_factor of each head, LongRoPE scaling (short/long factors switched past
/// original_max_position_embeddings, with its attention factor), and the config's sliding window on every layer.
/// </summary>
public sealed class Phi3ForCausalLM : CausalLanguageModel
{
    public readonly Phi3Model model;
    public readonly nn.Module<Tensor, Tensor>? lm_head;

    public Phi3ForCausalLM(ModelConfig config) : base(nameof(Phi3ForCausalLM), config)
    {
        model = new Phi3Model(config);
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

public sealed class Phi3Model : nn.Module
{
    public readonly Embedding embed_tokens;
    public readonly ModuleList<Phi3DecoderLayer> layers;
    public readonly RmsNorm norm;
    private readonly DeviceCached<RotaryEmbedding> rotary;

    public Phi3Model(ModelConfig config) : base(nameof(Phi3Model))
    {
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = new ModuleList<Phi3DecoderLayer>(
            Enumerable.Range(0, config.NumLayers).Select(i => new Phi3DecoderLayer(config, i)).ToArray());
        norm = new RmsNorm(config.HiddenSize, config.NormEps);
        rotary = new DeviceCached<RotaryEmbedding>(device => RotaryEmbedding.ForConfig(config, device));
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, bool checkpointLayers = false)
    {
        using var scope = NewDisposeScope();
        var angles = rotary.For(x.device).Angles(ctx.PositionIds, x.dtype);   // (B, 1, T, rotary dim)
        if (checkpointLayers)   // the backward recomputes layers after this scope has ended
            angles = (angles.Cos.DetachFromDisposeScope(), angles.Sin.DetachFromDisposeScope());
        foreach (var layer in layers)
            x = checkpointLayers ? ActivationCheckpoint.Run(input => layer.Forward(input, ctx, angles), x) : layer.Forward(x, ctx, angles);
        if (ctx.Cache is { } cache) cache.Advance((int)x.shape[1]);
        return norm.forward(x).MoveToOuterDisposeScope();
    }
}

public sealed class Phi3DecoderLayer : nn.Module
{
    public readonly Phi3Attention self_attn;
    public readonly Phi3Mlp mlp;
    public readonly RmsNorm input_layernorm;
    public readonly RmsNorm post_attention_layernorm;
    public readonly Dropout resid_attn_dropout;
    public readonly Dropout resid_mlp_dropout;

    public Phi3DecoderLayer(ModelConfig config, int layerIndex) : base(nameof(Phi3DecoderLayer))
    {
        self_attn = new Phi3Attention(config, layerIndex);
        mlp = new Phi3Mlp(config);
        input_layernorm = new RmsNorm(config.HiddenSize, config.NormEps);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.NormEps);
        var residualDropout = config.Raw["resid_pdrop"]?.GetValue<double>() ?? 0.0;
        resid_attn_dropout = nn.Dropout(residualDropout);
        resid_mlp_dropout = nn.Dropout(residualDropout);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor Sin) angles)
    {
        using var scope = NewDisposeScope();
        x = x + resid_attn_dropout.forward(self_attn.Forward(input_layernorm.forward(x), ctx, angles));
        x = x + resid_mlp_dropout.forward(mlp.forward(post_attention_layernorm.forward(x)));
        return x.MoveToOuterDisposeScope();
    }
}

public sealed class Phi3Attention : nn.Module
{
    public nn.Module<Tensor, Tensor> qkv_proj;   // (C → nh·hd + 2·nkv·hd): queries, keys, values
    public nn.Module<Tensor, Tensor> o_proj;
    private readonly int numHeads, numKvHeads, headDim, layerIndex;
    private readonly AttentionSettings settings;

    public Phi3Attention(ModelConfig config, int layerIndex) : base(nameof(Phi3Attention))
    {
        (numHeads, numKvHeads, headDim, this.layerIndex) = (config.NumHeads, config.NumKeyValueHeads, config.HeadDim, layerIndex);
        qkv_proj = nn.Linear(config.HiddenSize, (numHeads + 2 * numKvHeads) * headDim, hasBias: false);
        o_proj = nn.Linear(numHeads * headDim, config.HiddenSize, hasBias: false);
        settings = new AttentionSettings(SlidingWindow: config.SlidingWindowOf(layerIndex));
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor Sin) angles)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        var qkv = qkv_proj.forward(x);                                                           // (B, T, (nh+2nkv)·hd)
        var q = qkv.narrow(-1, 0, numHeads * headDim).view(b, t, numHeads, headDim).transpose(1, 2);
        var k = qkv.narrow(-1, numHeads * headDim, numKvHeads * headDim).view(b, t, numKvHeads, headDim).transpose(1, 2);
        var v = qkv.narrow(-1, (numHeads + numKvHeads) * headDim, numKvHeads * headDim).view(b, t, numKvHeads, headDim).transpose(1, 2);
        (q, k) = RotaryEmbedding.Apply(q, k, angles);
        return o_proj.forward(Attention.Compute(q, k, v, ctx, layerIndex, settings));
    }
}

public sealed class Phi3Mlp : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> gate_up_proj;   // (C → 2·ffn): gate, then up
    public nn.Module<Tensor, Tensor> down_proj;
    private readonly Func<Tensor, Tensor> act;
    private readonly int intermediate;

    public Phi3Mlp(ModelConfig config) : base(nameof(Phi3Mlp))
    {
        intermediate = config.IntermediateSize;
        gate_up_proj = nn.Linear(config.HiddenSize, 2 * intermediate, hasBias: false);
        down_proj = nn.Linear(intermediate, config.HiddenSize, hasBias: false);
        act = Activations.For(config.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var gateUp = gate_up_proj.forward(x);
        return down_proj.forward(gateUp.narrow(-1, intermediate, intermediate) * act(gateUp.narrow(-1, 0, intermediate)));
    }
}
