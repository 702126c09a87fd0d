using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Attention with a per-head RMSNorm on queries and keys before RoPE (<c>q_norm</c>/<c>k_norm</c> over head_dim), as
/// Qwen3 and Gemma 3 have it; the families differ only in the norm's form and in the layer's
/// <see cref="AttentionSettings"/> (windows, Gemma's score scale and soft-capping). Field names are the HF names.
/// </summary>
public abstract class QkNormAttention : DecoderAttention
{
    // Typed as plain modules so fine-tuning methods can wrap them (LoRA, IA3, adapters) without touching this file.
    public nn.Module<Tensor, Tensor> q_proj;
    public nn.Module<Tensor, Tensor> k_proj;
    public nn.Module<Tensor, Tensor> v_proj;
    public nn.Module<Tensor, Tensor> o_proj;
    public readonly RmsNorm q_norm;   // over head_dim, per head
    public readonly RmsNorm k_norm;
    private readonly int numHeads, numKvHeads, headDim, layerIndex;
    private readonly AttentionSettings settings;
    private readonly FusedLinear qkv = new();

    /// <param name="unitOffsetNorms">Gemma's (1 + w) norms.</param>
    protected QkNormAttention(string name, ModelConfig config, int layerIndex, bool unitOffsetNorms, AttentionSettings settings) : base(name)
    {
        (numHeads, numKvHeads, headDim, this.layerIndex, this.settings) =
            (config.NumHeads, config.NumKeyValueHeads, config.HeadDim, layerIndex, settings);
        q_proj = nn.Linear(config.HiddenSize, numHeads * headDim, hasBias: config.AttentionBias);
        k_proj = nn.Linear(config.HiddenSize, numKvHeads * headDim, hasBias: config.AttentionBias);
        v_proj = nn.Linear(config.HiddenSize, numKvHeads * headDim, hasBias: config.AttentionBias);
        o_proj = nn.Linear(numHeads * headDim, config.HiddenSize, hasBias: config.AttentionBias);
        q_norm = new RmsNorm(headDim, config.NormEps, unitOffsetNorms);
        k_norm = new RmsNorm(headDim, config.NormEps, unitOffsetNorms);
    }

    public override Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles)
    {
        var (b, t) = (x.size(0), x.size(1));
        var (q, k, v) = Projections.QueryKeyValue(qkv, x, q_proj, k_proj, v_proj, numHeads * headDim, numKvHeads * headDim);
        q = q_norm.forward(q.view(b, t, numHeads, headDim)).transpose(1, 2);       // (B, nh, T, hd)
        k = k_norm.forward(k.view(b, t, numKvHeads, headDim)).transpose(1, 2);     // (B, nkv, T, hd)
        v = v.view(b, t, numKvHeads, headDim).transpose(1, 2);                     // (B, nkv, T, hd)
        (q, k) = (RotaryEmbedding.ApplyRotation(q, angles), RotaryEmbedding.ApplyRotation(k, angles));
        return DenseMatVec.Forward(o_proj, Attention.Compute(q, k, v, ctx, layerIndex, settings));
    }

    /// <summary>The fused q/k/v weight, the q/k norms (Qwen3's form), o_proj and the heads, for <see cref="DecodeLayerStack"/>.</summary>
    internal override DecodeAttentionParts? DecodeParts() =>
        !q_norm.UnitOffset && !k_norm.UnitOffset && DecodeProjection.Of(o_proj) is { } output &&
        DecodeProjection.Fused(qkv, q_proj, k_proj, v_proj) is { } fused
            ? new DecodeAttentionParts(fused, output, new AttentionHeads(numHeads, numKvHeads, headDim, layerIndex, settings),
                UsesRope: true, QueryNorm: q_norm, KeyNorm: k_norm)
            : null;

    protected override void Dispose(bool disposing)
    {
        if (disposing) qkv.Dispose();
        base.Dispose(disposing);
    }
}
