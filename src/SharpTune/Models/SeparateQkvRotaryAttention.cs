using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// The attention Phi and StableLM share, over each family's own fields: separate q/k/v projections viewed per head,
/// an optional normalisation of each query and key head, RoPE on the first rotary dims (rotate_half), scores scaled by
/// head_dim^-½ through <see cref="Attention.Compute"/> (with the cache, if any), and the output projection.
/// </summary>
internal static class SeparateQkvRotaryAttention
{
    /// <param name="headNorms">The per-head query and key norms (qk_layernorm), applied to (B, heads, T, hd); null without.</param>
    public static Tensor Forward(Tensor x, ForwardContext ctx, (Tensor Cos, Tensor SignedSin) angles,
        (nn.Module<Tensor, Tensor> Query, nn.Module<Tensor, Tensor> Key, nn.Module<Tensor, Tensor> Value, nn.Module<Tensor, Tensor> Output) projections,
        (Func<Tensor, Tensor> Query, Func<Tensor, Tensor> Key)? headNorms, int numHeads, int numKeyValueHeads, int headDim, int layerIndex)
    {
        var (b, t) = (x.size(0), x.size(1));
        var q = DenseMatVec.Forward(projections.Query, x).view(b, t, numHeads, headDim).transpose(1, 2);            // (B, nh, T, hd)
        var k = DenseMatVec.Forward(projections.Key, x).view(b, t, numKeyValueHeads, headDim).transpose(1, 2);      // (B, nkv, T, hd)
        var v = DenseMatVec.Forward(projections.Value, x).view(b, t, numKeyValueHeads, headDim).transpose(1, 2);
        if (headNorms is { } norms) (q, k) = (norms.Query(q), norms.Key(k));
        (q, k) = (RotaryEmbedding.ApplyRotation(q, angles), RotaryEmbedding.ApplyRotation(k, angles));
        return DenseMatVec.Forward(projections.Output, Attention.Compute(q, k, v, ctx, layerIndex));
    }
}
