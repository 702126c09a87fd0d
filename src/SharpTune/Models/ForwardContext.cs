using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// What a forward pass needs besides the token embeddings: positions, which keys each query may attend to, and an
/// optional KV cache. A null <see cref="AttentionMask"/> means plain causal attention over the current sequence.
/// </summary>
public sealed class ForwardContext
{
    /// <summary>(B, T) absolute positions of the current tokens (used by RoPE / learned position embeddings).</summary>
    public required Tensor PositionIds { get; init; }

    /// <summary>(B, 1, T, S) boolean mask, true where a query may attend to a key; S = cached + current length.</summary>
    public Tensor? AttentionMask { get; init; }

    public KvCache? Cache { get; init; }

    /// <summary>
    /// The largest value in <see cref="PositionIds"/> when the caller knows it on the host (decoding does), so RoPE
    /// scalings that switch on it (LongRoPE) need not read it back from the device; null = read it when needed.
    /// </summary>
    public long? MaxPosition { get; init; }

    /// <summary>Optional per-layer key/value prefixes (prefix tuning): returns (B, nkv, P, hd) keys and values.</summary>
    public Func<int, (Tensor Keys, Tensor Values)?>? LayerPrefix { get; init; }

    /// <summary>Positions 0..T-1 for every row, plain causal attention.</summary>
    public static ForwardContext Causal(long batch, long length, Device device) =>
        new() { PositionIds = arange(length, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(batch, length) };
}
