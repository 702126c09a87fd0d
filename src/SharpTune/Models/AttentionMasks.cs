using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>Builds boolean attention masks (true = may attend) for padded batches, KV caches and packed sequences.</summary>
public static class AttentionMasks
{
    /// <summary>
    /// Causal mask over keys 0..S-1 for queries at key positions (S-T)..(S-1), hiding keys whose <paramref name="keyIsReal"/>
    /// is false (padding). Each query may always see itself, so padded query rows never become all-masked (no NaN).
    /// </summary>
    /// <param name="keyIsReal">(B, S) bool or 0/1: which key positions hold real tokens.</param>
    /// <param name="queryLength">T, the number of current (non-cached) tokens.</param>
    public static Tensor CausalWithPadding(Tensor keyIsReal, int queryLength)
    {
        using var scope = NewDisposeScope();
        var s = keyIsReal.shape[1];
        var device = keyIsReal.device;
        var queryPos = arange(s - queryLength, s, dtype: ScalarType.Int64, device: device).view(1, 1, queryLength, 1);
        var keyPos = arange(s, dtype: ScalarType.Int64, device: device).view(1, 1, 1, s);
        var causal = keyPos <= queryPos;                                             // (1,1,T,S)
        var real = keyIsReal.to(ScalarType.Bool).view(keyIsReal.shape[0], 1, 1, s);   // (B,1,1,S)
        var self = keyPos == queryPos;
        return causal.logical_and(real).logical_or(self).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The sliding-window band for queries at key slots (S-T)..(S-1): a query sees a key when
    /// query slot - key slot &lt; <paramref name="window"/>, i.e. <paramref name="window"/> keys including itself
    /// (transformers' sliding_window_overlay: kv_idx &gt; q_idx - window). Combine it with a causal/padding mask.
    /// </summary>
    /// <returns>(1, 1, T, S) bool.</returns>
    public static Tensor SlidingWindow(int queryLength, int keyLength, int window, Device device)
    {
        using var scope = NewDisposeScope();
        var queryPos = arange(keyLength - queryLength, keyLength, dtype: ScalarType.Int64, device: device).view(1, 1, queryLength, 1);
        var keyPos = arange(keyLength, dtype: ScalarType.Int64, device: device).view(1, 1, 1, keyLength);
        return (keyPos > queryPos - window).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Block-diagonal causal mask for packed sequences: a token attends only to earlier tokens of the same segment.
    /// </summary>
    /// <param name="segmentIds">(B, T) integer id of the example each token belongs to.</param>
    public static Tensor PackedCausal(Tensor segmentIds)
    {
        using var scope = NewDisposeScope();
        var t = segmentIds.shape[1];
        var pos = arange(t, dtype: ScalarType.Int64, device: segmentIds.device);
        var causal = pos.view(1, 1, 1, t) <= pos.view(1, 1, t, 1);
        var same = segmentIds.unsqueeze(1).unsqueeze(-1) == segmentIds.unsqueeze(1).unsqueeze(2); // (B,1,T,T)
        return causal.logical_and(same).MoveToOuterDisposeScope();
    }

    /// <summary>Positions that restart at 0 at each new segment (for packed sequences).</summary>
    public static Tensor PackedPositions(Tensor segmentIds)
    {
        using var scope = NewDisposeScope();
        var t = segmentIds.shape[1];
        var pos = arange(t, dtype: ScalarType.Int64, device: segmentIds.device).unsqueeze(0).expand_as(segmentIds);
        var isStart = ones_like(segmentIds, dtype: ScalarType.Bool);
        isStart[TensorIndex.Colon, TensorIndex.Slice(1)] = segmentIds[TensorIndex.Colon, TensorIndex.Slice(1)]
            .ne(segmentIds[TensorIndex.Colon, TensorIndex.Slice(null, -1)]);
        var startPos = where(isStart, pos, zeros_like(pos));
        var segmentStart = startPos.cummax(1).values;
        return (pos - segmentStart).MoveToOuterDisposeScope();
    }
}
