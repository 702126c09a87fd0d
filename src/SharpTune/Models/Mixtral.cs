using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Mixtral (transformers' <c>MixtralForCausalLM</c>, e.g. mistralai/Mixtral-8x7B-v0.1): Mistral's attention, and on every
/// layer a <see cref="SparseMoeBlock"/> named <c>block_sparse_moe</c> whose top-k routing weights are always
/// renormalised, over <c>num_local_experts</c> SwiGLU experts with Mixtral's names (w1 gate, w3 up, w2 down).
/// </summary>
public sealed class MixtralForCausalLM : DecoderForCausalLM
{
    private readonly RouterLogitsRecorder router;

    public MixtralForCausalLM(ModelConfig config) : this(config, new RouterLogitsRecorder()) { }

    private MixtralForCausalLM(ModelConfig config, RouterLogitsRecorder router)
        : base(nameof(MixtralForCausalLM), config, new DecoderModel(config, i => new MixtralDecoderLayer(config, i, router)))
    {
        this.router = router;
    }

    internal override RouterLogitsRecorder? RouterLogits => router;
}

/// <summary>Mixtral's pre-norm layer: x + attn(norm(x)), then x + block_sparse_moe(norm(x)).</summary>
public sealed class MixtralDecoderLayer : DecoderLayer
{
    public readonly DecoderAttention self_attn;
    public readonly nn.Module<Tensor, Tensor> block_sparse_moe;
    public readonly RmsNorm input_layernorm;
    public readonly RmsNorm post_attention_layernorm;

    internal MixtralDecoderLayer(ModelConfig config, int layerIndex, RouterLogitsRecorder router) : base(nameof(MixtralDecoderLayer))
    {
        var moe = config.Experts ?? throw new InvalidDataException($"{config.Architecture}: the config has no mixture-of-experts settings");
        self_attn = new LlamaAttention(config, layerIndex);
        block_sparse_moe = new SparseMoeBlock(config, moe, normalize: true, () => new MixtralExpert(config, moe.ExpertIntermediateSize), router);
        input_layernorm = new RmsNorm(config.HiddenSize, config.NormEps);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.NormEps);
        RegisterComponents();
    }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        using var scope = NewDisposeScope();
        x = x + self_attn.Forward(input_layernorm.forward(x), ctx, angles);
        x = x + block_sparse_moe.forward(post_attention_layernorm.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>One Mixtral expert (MixtralBlockSparseTop2MLP): w2(act(w1(x)) · w3(x)).</summary>
public sealed class MixtralExpert : nn.Module<Tensor, Tensor>
{
    public nn.Module<Tensor, Tensor> w1;
    public nn.Module<Tensor, Tensor> w2;
    public nn.Module<Tensor, Tensor> w3;
    private readonly Func<Tensor, Tensor> act;

    public MixtralExpert(ModelConfig config, int intermediateSize) : base(nameof(MixtralExpert))
    {
        act = Activations.For(config.HiddenAct);
        w1 = nn.Linear(config.HiddenSize, intermediateSize, hasBias: false);
        w2 = nn.Linear(intermediateSize, config.HiddenSize, hasBias: false);
        w3 = nn.Linear(config.HiddenSize, intermediateSize, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => w2.forward(act(w1.forward(x)) * w3.forward(x));
}
