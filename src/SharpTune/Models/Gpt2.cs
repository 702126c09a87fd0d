using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// GPT-2 (Hugging Face <c>GPT2LMHeadModel</c>): learned positions, pre-LayerNorm blocks, fused q/k/v Conv1D,
/// GELU (tanh approximation) MLP, output projection tied to the token embedding.
/// </summary>
public sealed class GPT2LMHeadModel : CausalLanguageModel
{
    public readonly GPT2Model transformer;

    public GPT2LMHeadModel(ModelConfig config) : base(nameof(GPT2LMHeadModel), config)
    {
        transformer = new GPT2Model(config);
        RegisterComponents();
    }

    protected override Tensor LookUpEmbeddings(Tensor inputIds) => transformer.wte.forward(inputIds);

    protected override Tensor DecodeLayers(Tensor inputsEmbeds, ForwardContext context) =>
        transformer.Forward(inputsEmbeds, context, CheckpointedLayersNow);

    public override Tensor ComputeLogits(Tensor hidden)
    {
        if (transformer.wte.WeightOverride is null) return F.linear(hidden, transformer.wte.weight!);
        using var tied = transformer.wte.CurrentWeight();   // trainable tokens reach the tied head too
        return F.linear(hidden, tied);
    }

    public override Tensor EmbeddingWeight => transformer.wte.weight!;

    internal override TokenEmbedding InputEmbedding => transformer.wte;

    internal override nn.Module<Tensor, Tensor>? UntiedOutputHead => null;

    public override bool HeadIsTrainable => OutputProjectionTakesGradients;

    public override string EmbeddingParameterName => "transformer.wte.weight";

    // Old GPT-2 checkpoints carry the causal-mask buffers "attn.bias" / "attn.masked_bias"; the mask is built per call.
    public override bool IsIgnorableCheckpointTensor(string name) =>
        name.EndsWith(".attn.masked_bias", StringComparison.Ordinal) ||
        (name.EndsWith(".attn.bias", StringComparison.Ordinal) && !name.Contains("c_attn")) ||
        name == "lm_head.weight";
}

public sealed class GPT2Model : nn.Module
{
    public readonly TokenEmbedding wte;
    public readonly TokenEmbedding wpe;
    public readonly ModuleList<GPT2Block> h;
    public readonly LayerNorm ln_f;

    public GPT2Model(ModelConfig config) : base(nameof(GPT2Model))
    {
        wte = new TokenEmbedding(config.VocabSize, config.HiddenSize);
        wpe = new TokenEmbedding(config.MaxPositionEmbeddings, config.HiddenSize);
        h = new ModuleList<GPT2Block>(Enumerable.Range(0, config.NumLayers).Select(i => new GPT2Block(config, i)).ToArray());
        ln_f = nn.LayerNorm(config.HiddenSize, config.NormEps);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx, int checkpointedLayers = 0)
    {
        var caller = x;
        x = x + wpe.forward(ctx.PositionIds);
        var index = 0;
        foreach (var block in h)
        {
            var output = index++ < checkpointedLayers ? ActivationCheckpoint.Run(input => block.Forward(input, ctx), x) : block.Forward(x, ctx);
            x = LayerInputRelease.Next(x, output, caller);   // one layer's hidden states at a time without autograd
        }
        if (ctx.Cache is { } cache) cache.Advance((int)x.shape[1]);
        return ln_f.forward(x);
    }
}

public sealed class GPT2Block : nn.Module
{
    public readonly LayerNorm ln_1;
    public readonly GPT2Attention attn;
    public readonly LayerNorm ln_2;
    public readonly GPT2Mlp mlp;

    public GPT2Block(ModelConfig config, int layerIndex) : base(nameof(GPT2Block))
    {
        ln_1 = nn.LayerNorm(config.HiddenSize, config.NormEps);
        attn = new GPT2Attention(config, layerIndex);
        ln_2 = nn.LayerNorm(config.HiddenSize, config.NormEps);
        mlp = new GPT2Mlp(config);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx)
    {
        using var scope = NewDisposeScope();
        x = x + attn.Forward(ln_1.forward(x), ctx);
        x = x + mlp.forward(ln_2.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

public sealed class GPT2Attention : nn.Module
{
    public nn.Module<Tensor, Tensor> c_attn;   // fused q, k, v: (C → 3C)
    public nn.Module<Tensor, Tensor> c_proj;
    private readonly int numHeads, headDim, layerIndex;

    public GPT2Attention(ModelConfig config, int layerIndex) : base(nameof(GPT2Attention))
    {
        (numHeads, headDim, this.layerIndex) = (config.NumHeads, config.HeadDim, layerIndex);
        c_attn = new Conv1D(config.HiddenSize, 3 * config.HiddenSize);
        c_proj = new Conv1D(config.HiddenSize, config.HiddenSize);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, ForwardContext ctx)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        var qkv = c_attn.forward(x).view(b, t, 3, numHeads, headDim);                  // (B, T, 3, nh, hd)
        var q = qkv.select(2, 0).transpose(1, 2);                                     // (B, nh, T, hd)
        var k = qkv.select(2, 1).transpose(1, 2);
        var v = qkv.select(2, 2).transpose(1, 2);
        return c_proj.forward(Attention.Compute(q, k, v, ctx, layerIndex));
    }
}

public sealed class GPT2Mlp : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> c_fc;
    public nn.Module<Tensor, Tensor> c_proj;

    public GPT2Mlp(ModelConfig config) : base(nameof(GPT2Mlp))
    {
        c_fc = new Conv1D(config.HiddenSize, config.IntermediateSize);
        c_proj = new Conv1D(config.IntermediateSize, config.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) =>
        c_proj.forward(F.gelu(c_fc.forward(x), approximate: GELU.Approximate.tanh));
}
