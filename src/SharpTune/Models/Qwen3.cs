using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Qwen3 (transformers' <c>Qwen3ForCausalLM</c>): the Llama decoder with a per-head RMSNorm on queries and keys
/// (<c>q_norm</c>/<c>k_norm</c>, applied before RoPE), a head_dim independent of hidden / heads, no q/k/v bias by
/// default, and sliding windows on the layers from max_window_layers on when use_sliding_window is set.
/// </summary>
public sealed class Qwen3ForCausalLM(ModelConfig config) : DecoderForCausalLM(nameof(Qwen3ForCausalLM), config,
    new DecoderModel(config, i => new LlamaDecoderLayer(config, new Qwen3Attention(config, i), new LlamaMlp(config))));

public sealed class Qwen3Attention : DecoderAttention
{
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    public readonly RmsNorm q_norm;   // over head_dim, per head
    public readonly RmsNorm k_norm;
    private readonly int numHeads, numKvHeads, headDim, layerIndex;
    private readonly AttentionSettings settings;
    private readonly FusedLinear qkv = new();

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

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        var (b, t) = (x.shape[0], x.shape[1]);
        var (q, k, v) = Projections.QueryKeyValue(qkv, x, q_proj, k_proj, v_proj, numHeads * headDim, numKvHeads * headDim);
        q = q_norm.forward(q.view(b, t, numHeads, headDim)).transpose(1, 2);       // (B, nh, T, hd)
        k = k_norm.forward(k.view(b, t, numKvHeads, headDim)).transpose(1, 2);     // (B, nkv, T, hd)
        v = v.view(b, t, numKvHeads, headDim).transpose(1, 2);                     // (B, nkv, T, hd)
        (q, k) = (RotaryEmbedding.ApplyRotation(q, angles), RotaryEmbedding.ApplyRotation(k, angles));
        return DenseMatVec.Forward(o_proj, Attention.Compute(q, k, v, ctx, layerIndex, settings));
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) qkv.Dispose();
        base.Dispose(disposing);
    }
}
