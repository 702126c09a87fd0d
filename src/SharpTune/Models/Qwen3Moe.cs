using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Qwen3-MoE (transformers' <c>Qwen3MoeForCausalLM</c>, e.g. Qwen3-30B-A3B): Qwen3's layer with q/k norms, whose MLP is a
/// <see cref="SparseMoeBlock"/> of <c>num_experts</c> SwiGLU experts (<c>mlp.gate</c>, <c>mlp.experts.{i}.gate_proj</c>…)
/// on the layers <see cref="MixtureOfExperts.IsSparse"/> names and a dense MLP of intermediate_size on the others. No
/// shared expert (Qwen2-MoE's). Router logits are recorded for the load-balancing loss while a recording is open.
/// </summary>
public sealed class Qwen3MoeForCausalLM : DecoderForCausalLM
{
    private readonly RouterLogitsRecorder router;

    public Qwen3MoeForCausalLM(ModelConfig config) : this(config, new RouterLogitsRecorder()) { }

    private Qwen3MoeForCausalLM(ModelConfig config, RouterLogitsRecorder router)
        : base(nameof(Qwen3MoeForCausalLM), config,
            new DecoderModel(config, i => new LlamaDecoderLayer(config, new Qwen3Attention(config, i), Mlp(config, i, router))))
    {
        this.router = router;
    }

    internal override RouterLogitsRecorder? RouterLogits => router;

    private static nn.Module<Tensor, Tensor> Mlp(ModelConfig config, int layer, RouterLogitsRecorder router)
    {
        var moe = config.Experts ?? throw new InvalidDataException($"{config.Architecture}: the config has no mixture-of-experts settings");
        return moe.IsSparse(layer)
            ? new SparseMoeBlock(config, moe, moe.NormalizeTopKProbabilities, () => new LlamaMlp(config, moe.ExpertIntermediateSize), router)
            : new LlamaMlp(config);
    }
}
