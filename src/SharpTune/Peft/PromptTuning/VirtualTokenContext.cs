using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Peft.PromptTuning;

/// <summary>
/// The forward context once n virtual tokens sit before the real ones: the virtual tokens take positions 0..n-1 and
/// attend causally among themselves only; every real token's position shifts by n and it sees all virtual tokens.
/// </summary>
internal static class VirtualTokenContext
{
    /// <summary>The context once the n virtual rows are prepended to the real ones.</summary>
    public static ForwardContext Prefill(ForwardContext real, int n, long batch, Device device)
    {
        var virtualPositions = arange(n, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(batch, n);
        return new ForwardContext
        {
            PositionIds = cat([virtualPositions, real.PositionIds.expand(batch, -1) + n], dim: 1),     // (B, n+T)
            // A null mask means plain causal attention, which over n+T tokens is exactly what is wanted.
            AttentionMask = real.AttentionMask is { } mask ? PrefillMask(mask, n) : null,
            Cache = real.Cache,
            LayerPrefix = real.LayerPrefix,
        };
    }

    // (B, 1, T, S) → (B, 1, n+T, n+S): virtual queries see earlier virtual keys; real queries see every virtual key
    // and, beyond them, exactly what the caller's mask allowed.
    private static Tensor PrefillMask(Tensor mask, int n)
    {
        var (b, t, s) = (mask.shape[0], mask.shape[2], mask.shape[3]);
        var virtualCausal = ones(n, n, dtype: ScalarType.Bool, device: mask.device).tril().expand(b, 1, n, n);
        var virtualRows = cat([virtualCausal, zeros(b, 1, n, s, dtype: ScalarType.Bool, device: mask.device)], dim: 3);
        return cat([virtualRows, VirtualKeysVisible(mask, n)], dim: 2);
    }

    // (B, 1, T, S) → (B, 1, T, n+S).
    private static Tensor VirtualKeysVisible(Tensor mask, int n) =>
        cat([ones(mask.shape[0], 1, mask.shape[2], n, dtype: ScalarType.Bool, device: mask.device), mask], dim: 3);
}
