using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>
/// Attention with a learned sink logit per head (gpt-oss): transformers' eager_attention_forward for GptOss
/// (huggingface/transformers@00d4b3d2 models/gpt_oss/modeling_gpt_oss.py) — scores·head_dim^-½ plus the mask, the head's
/// sink appended as one more column, the row's maximum subtracted, softmax, the sink column dropped, then the values.
/// </summary>
/// <remarks>
/// The same cache, prefix, padding and sliding-window handling as <see cref="Attention.Compute"/>, for prompts and
/// decode steps alike (no kernel here knows the sink column). The softmax runs in float32 and is cast back, as the other
/// hand-written attentions here do; transformers runs it in the activations' dtype (the same in float32).
/// </remarks>
internal static class SinkAttention
{
    /// <summary>q (B, nh, T, hd), k/v (B, nkv, T, hd) for the current tokens, sinks (nh) → output (B, T, nh·hd).</summary>
    public static Tensor Compute(Tensor q, Tensor k, Tensor v, Tensor sinks, ForwardContext ctx, int layer, int? slidingWindow)
    {
        using var scope = NewDisposeScope();
        if (ctx.Cache is { } cache) (k, v) = cache.Update(layer, k, v);
        var prefixLength = 0L;
        if (ctx.LayerPrefix?.Invoke(layer) is { } prefix)
        {
            prefixLength = prefix.Keys.shape[2];
            k = cat([prefix.Keys.to(k.dtype), k], dim: 2);
            v = cat([prefix.Values.to(v.dtype), v], dim: 2);
        }
        var (batch, heads, queries, headDim) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        var keys = k.shape[2];
        var mask = ctx.AttentionMask
                   ?? AttentionMasks.CausalWithPadding(ones(batch, keys - prefixLength, dtype: ScalarType.Bool, device: q.device), (int)queries);
        if (prefixLength > 0 && mask.shape[3] != keys)
            mask = cat([ones(mask.shape[0], 1, mask.shape[2], prefixLength, dtype: ScalarType.Bool, device: mask.device), mask], dim: 3);
        if (slidingWindow is { } window && keys > window)
            mask = mask.logical_and(AttentionMasks.SlidingWindow((int)queries, (int)keys, window, q.device));
        var groups = heads / k.shape[1];
        if (groups > 1)
        {
            k = k.unsqueeze(2).expand(batch, k.shape[1], groups, keys, headDim).reshape(batch, heads, keys, headDim);
            v = v.unsqueeze(2).expand(batch, v.shape[1], groups, keys, headDim).reshape(batch, heads, keys, headDim);
        }
        var scores = matmul(q, k.transpose(-2, -1)).to(ScalarType.Float32) * (1.0 / Math.Sqrt(headDim));   // (B, nh, T, S)
        scores = scores.masked_fill(mask.logical_not(), float.NegativeInfinity);
        var sinkColumn = sinks.to(ScalarType.Float32).reshape(1, heads, 1, 1).expand(batch, heads, queries, 1);
        var combined = cat([scores, sinkColumn], dim: -1);                                                 // (B, nh, T, S + 1)
        combined = combined - combined.amax([-1], keepdim: true);
        var probabilities = F.softmax(combined, -1).narrow(-1, 0, keys).to(v.dtype);                       // sink dropped
        var y = matmul(probabilities, v);                                                                    // (B, nh, T, hd)
        return y.transpose(1, 2).reshape(batch, queries, heads * headDim).MoveToOuterDisposeScope();
    }
}
