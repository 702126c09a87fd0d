using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>The scaled-dot-product core shared by every architecture: cache, prefixes, GQA and masking.</summary>
internal static class Attention
{
    /// <summary>
    /// q (B, nh, T, hd), k/v (B, nkv, T, hd) for the current tokens → attention output (B, T, nh·hd).
    /// </summary>
    public static Tensor Compute(Tensor q, Tensor k, Tensor v, ForwardContext ctx, int layer)
    {
        if (ctx.Cache is { } cache)
            (k, v) = cache.Update(layer, k, v);
        var prefixLength = 0L;
        if (ctx.LayerPrefix?.Invoke(layer) is { } prefix)
        {
            prefixLength = prefix.Keys.shape[2];
            k = cat([prefix.Keys.to(k.dtype), k], dim: 2);
            v = cat([prefix.Values.to(v.dtype), v], dim: 2);
        }
        var groups = q.shape[1] / k.shape[1];
        if (groups > 1)
        {
            k = RepeatKv(k, groups);
            v = RepeatKv(v, groups);
        }
        var mask = ctx.AttentionMask;
        var queries = q.shape[2];
        var keys = k.shape[2];
        // Without a mask, a square block is plain causal attention and a single query may see every key; only a block of
        // several queries after cached keys or prefixes needs an explicit mask (SDPA's causal flag aligns top-left).
        var plainCausal = mask is null && queries == keys;
        if (mask is null && queries > 1 && queries != keys)
        {
            var realKeys = ones(q.shape[0], keys - prefixLength, dtype: ScalarType.Bool, device: q.device);
            mask = AttentionMasks.CausalWithPadding(realKeys, (int)queries);
        }
        if (mask is not null && prefixLength > 0 && mask.shape[3] != keys)
            mask = cat([ones(mask.shape[0], 1, mask.shape[2], prefixLength, dtype: ScalarType.Bool, device: mask.device), mask], dim: 3);
        var y = F.scaled_dot_product_attention(q, k, v, mask, 0.0, plainCausal);                // (B, nh, T, hd)
        return y.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1);                           // (B, T, nh·hd)
    }

    private static Tensor RepeatKv(Tensor x, long groups)
    {
        var (b, h, s, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        return x.unsqueeze(2).expand(b, h, groups, s, d).reshape(b, h * groups, s, d);
    }
}
