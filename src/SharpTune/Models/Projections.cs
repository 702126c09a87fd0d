using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>The q/k/v projections of an attention block, fused when <see cref="FusedLinear"/> can, one by one otherwise.</summary>
internal static class Projections
{
    /// <summary>x (B, T, C) → q (B, T, qWidth), k and v (B, T, kvWidth); views of one product when fused.</summary>
    public static (Tensor Q, Tensor K, Tensor V) QueryKeyValue(FusedLinear fused, Tensor x, nn.Module<Tensor, Tensor> q,
        nn.Module<Tensor, Tensor> k, nn.Module<Tensor, Tensor> v, long qWidth, long kvWidth)
    {
        if (fused.TryForward(x, q, k, v) is not { } qkv) return (q.forward(x), k.forward(x), v.forward(x));
        return Split(qkv, qWidth, kvWidth);
    }

    /// <summary>A fused product (…, qWidth + 2·kvWidth) → views of its queries, keys and values, in that order.</summary>
    public static (Tensor Q, Tensor K, Tensor V) Split(Tensor qkv, long qWidth, long kvWidth) =>
        (qkv.narrow(-1, 0, qWidth), qkv.narrow(-1, qWidth, kvWidth), qkv.narrow(-1, qWidth + kvWidth, kvWidth));

    /// <summary>
    /// q (B, nh, 1, hd), k and v (B, nkv, 1, hd) for one token per row from a fused projection (B, 1, (nh + 2·nkv)·hd):
    /// with a single position the head axis is taken directly (no transposes), and queries and keys are rotated together
    /// as one block of nh + nkv heads when <paramref name="rotation"/> is given.
    /// </summary>
    public static (Tensor Q, Tensor K, Tensor V) DecodeHeads(Tensor qkv, long batch, int numHeads, int numKvHeads, int headDim,
        (Tensor Cos, Tensor SignedSin)? rotation)
    {
        var heads = qkv.reshape(batch, numHeads + 2 * numKvHeads, 1, headDim);                      // (B, nh + 2nkv, 1, hd)
        var queriesAndKeys = heads.narrow(1, 0, numHeads + numKvHeads);
        if (rotation is { } tables)
            queriesAndKeys = RotaryDecodeKernel.TryRotate(qkv, batch, numHeads + numKvHeads, headDim, tables) ??
                             RotaryEmbedding.ApplyRotation(queriesAndKeys, tables);
        return (queriesAndKeys.narrow(1, 0, numHeads), queriesAndKeys.narrow(1, numHeads, numKvHeads),
            heads.narrow(1, numHeads + numKvHeads, numKvHeads));
    }
}
