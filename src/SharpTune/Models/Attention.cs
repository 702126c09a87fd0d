using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>How one layer attends beyond the shared defaults (head_dim^-½ scaling, full causal attention).</summary>
/// <param name="SlidingWindow">Keys a query may see, itself included (transformers: kv_idx &gt; q_idx - window).</param>
/// <param name="Scale">Factor on q·k (Gemma: query_pre_attn_scalar^-½; Granite: attention_multiplier); null = head_dim^-½.</param>
/// <param name="SoftCap">Scores become cap·tanh(score / cap) before masking (Gemma's attn_logit_softcapping).</param>
public readonly record struct AttentionSettings(int? SlidingWindow = null, double? Scale = null, double? SoftCap = null)
{
    /// <summary>
    /// Layer <paramref name="layer"/>'s settings from the config: its sliding window, Gemma's query_pre_attn_scalar^-½
    /// scale and attn_logit_softcapping, and Granite's attention_multiplier as the scale, where the config has them (only
    /// those families read the fields).
    /// </summary>
    public static AttentionSettings For(ModelConfig config, int layer) => new(
        SlidingWindow: config.SlidingWindowOf(layer),
        Scale: config.QueryPreAttnScalar is { } scalar ? Math.Pow(scalar, -0.5) : config.AttentionMultiplier,
        SoftCap: config.AttnLogitSoftcapping);
}

/// <summary>The scaled-dot-product core shared by every architecture: cache, prefixes, GQA, windows and masking.</summary>
internal static class Attention
{
    /// <summary>
    /// q (B, nh, T, hd), k/v (B, nkv, T, hd) for the current tokens → attention output (B, T, nh·hd).
    /// </summary>
    public static Tensor Compute(Tensor q, Tensor k, Tensor v, ForwardContext ctx, int layer, AttentionSettings settings = default)
    {
        var single = ctx.LayerPrefix is null && InferenceShortcuts.Enabled && q.size(2) == 1;
        if (single && ctx.Cache is { } decoding &&
            SingleQueryAttentionKernel.TryCompute(q, k, v, decoding, layer, ctx.AttentionMask, settings) is { } attended)
            return attended;
        if (ctx.Cache is { } cache)
            (k, v) = cache.Update(layer, k, v);
        if (single)
            return SingleQuery(q, k, v, ctx.AttentionMask, settings);
        var prefixLength = 0L;
        if (ctx.LayerPrefix?.Invoke(layer) is { } prefix)
        {
            prefixLength = prefix.Keys.shape[2];
            k = cat([prefix.Keys.to(k.dtype), k], dim: 2);
            v = cat([prefix.Values.to(v.dtype), v], dim: 2);
        }
        var mask = ctx.AttentionMask;
        var queries = q.shape[2];
        var keys = k.shape[2];
        // A window wider than every key changes nothing; a narrower one needs an explicit mask.
        var window = settings.SlidingWindow is { } w && keys > w ? w : (int?)null;
        var manual = settings.SoftCap is not null;
        // Without a mask, a square block is plain causal attention and a single query may see every key; only a block of
        // several queries after cached keys or prefixes needs an explicit mask (SDPA's causal flag aligns top-left).
        if (mask is null && ((queries > 1 && queries != keys) || window is not null || (manual && queries > 1)))
        {
            var realKeys = ones(q.shape[0], keys - prefixLength, dtype: ScalarType.Bool, device: q.device);
            mask = AttentionMasks.CausalWithPadding(realKeys, (int)queries);
        }
        if (mask is not null && prefixLength > 0 && mask.shape[3] != keys)
            mask = cat([ones(mask.shape[0], 1, mask.shape[2], prefixLength, dtype: ScalarType.Bool, device: mask.device), mask], dim: 3);
        if (mask is not null && window is not null)
            mask = mask.logical_and(AttentionMasks.SlidingWindow((int)queries, (int)keys, window.Value, q.device));
        if (!manual && PromptAttentionKernel.TryCompute(q, k, v, mask, settings) is { } prompt) return prompt;
        var groups = q.shape[1] / k.shape[1];
        if (groups > 1)
        {
            k = RepeatKv(k, groups);
            v = RepeatKv(v, groups);
        }
        var plainCausal = mask is null && queries == keys && queries > 1;
        Tensor y;
        if (manual)
            y = SoftCappedAttention(q, k, v, mask, settings.Scale ?? 1.0 / Math.Sqrt(q.shape[3]), settings.SoftCap!.Value);
        else
        {
            // SDPA here takes no scale argument: fold a custom one into q (SDPA multiplies by head_dim^-½ itself).
            if (settings.Scale is { } scale) q = q * (scale * Math.Sqrt(q.shape[3]));
            y = F.scaled_dot_product_attention(q, k, v, mask, 0.0, plainCausal);                 // (B, nh, T, hd)
        }
        return y.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1);                            // (B, T, nh·hd)
    }

    /// <summary>
    /// One query per row (a decode step): the same attention without building anything per step. A window keeps the
    /// last <c>SlidingWindow</c> keys (narrowing the padding mask with them) instead of masking the rest, and grouped-
    /// query heads attend as (B, nkv, group, hd) query blocks against the shared keys instead of copying every cached
    /// key group times. The mask, if any, is (B, 1, 1, S) and applies to every head alike.
    /// </summary>
    private static Tensor SingleQuery(Tensor q, Tensor k, Tensor v, Tensor? mask, AttentionSettings settings)
    {
        var (batch, heads, headDim) = (q.shape[0], q.shape[1], q.shape[3]);
        var keys = k.shape[2];
        if (settings.SlidingWindow is { } w && keys > w)
        {
            k = k.narrow(2, keys - w, w);
            v = v.narrow(2, keys - w, w);
            mask = mask?.narrow(3, keys - w, w);
        }
        var kvHeads = k.shape[1];
        var grouped = q.reshape(batch, kvHeads, heads / kvHeads, headDim);                       // (B, nkv, g, hd)
        Tensor y;
        if (settings.SoftCap is { } cap)
            y = SoftCappedAttention(grouped, k, v, mask, settings.Scale ?? 1.0 / Math.Sqrt(headDim), cap);
        else
        {
            if (settings.Scale is { } scale) grouped = grouped * (scale * Math.Sqrt(headDim));
            y = F.scaled_dot_product_attention(grouped, k, v, mask, 0.0, false);                 // (B, nkv, g, hd)
        }
        return y.reshape(batch, 1, heads * headDim);                                             // (B, 1, nh·hd)
    }

    // transformers' eager attention with soft-capping: scores·scale → cap·tanh(·/cap) → mask → softmax in fp32.
    private static Tensor SoftCappedAttention(Tensor q, Tensor k, Tensor v, Tensor? mask, double scale, double cap)
    {
        var scores = matmul(q, k.transpose(-2, -1)) * scale;                                      // (B, nh, T, S)
        scores = (scores / cap).tanh() * cap;
        if (mask is not null) scores = scores.masked_fill(mask.logical_not(), float.NegativeInfinity);
        var probs = F.softmax(scores.to(ScalarType.Float32), -1).to(q.dtype);
        return matmul(probs, v);                                                                   // (B, nh, T, hd)
    }

    private static Tensor RepeatKv(Tensor x, long groups)
    {
        var (b, h, s, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        return x.unsqueeze(2).expand(b, h, groups, s, d).reshape(b, h * groups, s, d);
    }
}
