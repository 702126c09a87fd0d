using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Pre-allocated key/value buffers for incremental decoding: one (B, nkv, capacity, hd) pair per layer (views of one buffer
/// for all layers). Layers write their new keys/values at <see cref="Length"/>; the model advances <see cref="Length"/>
/// once all layers have run.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor allKeys;     // (layers, B, nkv, capacity, hd): one buffer, so a whole cache copies in one operation
    private readonly Tensor allValues;
    private readonly Tensor[] keys;      // per-layer views of the buffers
    private readonly Tensor[] values;

    public KvCache(ModelConfig config, int batchSize, int capacity, ScalarType dtype, Device device)
    {
        allKeys = zeros([config.NumLayers, batchSize, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device).DetachFromDisposeScope();
        allValues = zeros([config.NumLayers, batchSize, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device).DetachFromDisposeScope();
        keys = new Tensor[config.NumLayers];
        values = new Tensor[config.NumLayers];
        for (var i = 0; i < config.NumLayers; i++)
        {
            keys[i] = allKeys.select(0, i).DetachFromDisposeScope();
            values[i] = allValues.select(0, i).DetachFromDisposeScope();
        }
        Capacity = capacity;
        BatchSize = batchSize;
        (Dtype, KvHeads, HeadDim) = (dtype, config.NumKeyValueHeads, config.HeadDim);
    }

    internal ScalarType Dtype { get; }
    internal int KvHeads { get; }
    internal int HeadDim { get; }

    /// <summary>Layer <paramref name="layer"/>'s whole (B, nkv, capacity, hd) key and value buffers, for kernels that write in place.</summary>
    internal (Tensor Keys, Tensor Values) Buffers(int layer) => (keys[layer], values[layer]);

    /// <summary>
    /// Where layer <paramref name="layer"/>'s key and value buffers start in memory (CPU caches), for kernels that write
    /// in place over raw buffers; the buffers never move while the cache lives.
    /// </summary>
    internal (nint Keys, nint Values) BufferPointers(int layer)
    {
        if (pointers is null)
        {
            var found = new (nint, nint)[keys.Length];
            unsafe
            {
                for (var i = 0; i < keys.Length; i++)
                    fixed (byte* k = keys[i].bytes)
                    fixed (byte* v = values[i].bytes)
                        found[i] = ((nint)k, (nint)v);
            }
            pointers = found;
        }
        return pointers[layer];
    }

    private (nint Keys, nint Values)[]? pointers;

    /// <summary>Every layer's key and value buffers, (layers, B, nkv, capacity, hd), e.g. to copy a whole cache at once.</summary>
    internal (Tensor Keys, Tensor Values) AllLayers => (allKeys, allValues);

    public int Capacity { get; }
    public int BatchSize { get; }

    /// <summary>Number of positions already stored.</summary>
    public int Length { get; private set; }

    /// <summary>Stores (B, nkv, T, hd) keys/values for one layer and returns all keys/values so far (views).</summary>
    public (Tensor keys, Tensor values) Update(int layer, Tensor k, Tensor v)
    {
        var t = (int)k.size(2);
        if (Length + t > Capacity)
            throw new InvalidOperationException($"KV cache full: {Length} + {t} positions exceed its capacity of {Capacity}");
        keys[layer].narrow(2, Length, t).copy_(k);
        values[layer].narrow(2, Length, t).copy_(v);
        return (keys[layer].narrow(2, 0, Length + t), values[layer].narrow(2, 0, Length + t));
    }

    /// <summary>Marks <paramref name="positions"/> more positions as stored (after every layer has written them).</summary>
    public void Advance(int positions) => Length += positions;

    /// <summary>
    /// Forgets every position from <paramref name="length"/> on, keeping the first <paramref name="length"/> (speculative
    /// decoding drops the keys/values of rejected candidates, as transformers' <c>DynamicCache.crop</c>); later writes
    /// overwrite the forgotten slots.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative or beyond <see cref="Length"/>.</exception>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length)
            throw new ArgumentOutOfRangeException(nameof(length), length, $"a KV cache holding {Length} positions can keep 0–{Length} of them");
        Length = length;
    }

    /// <summary>Empties the cache (its buffers are kept) so that every position can be computed again.</summary>
    internal void Rewind() => Length = 0;

    public void Dispose()
    {
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
        allKeys.Dispose();
        allValues.Dispose();
    }
}
