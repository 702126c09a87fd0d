using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// bitsandbytes' blockwise absmax scaling and nearest-code rounding (its default torch backend, which defines the
/// reference behaviour): values are split into blocks of <c>blockSize</c>, each block divided by its largest magnitude
/// (multiplied by the reciprocal, a trailing partial block divided), clamped to [-1, 1], and each value replaced by the
/// index of the nearest code, found with <c>bucketize</c> over the midpoints of the sorted code book (a value exactly on
/// a midpoint takes the lower code).
/// </summary>
internal static class Blockwise
{
    /// <summary>Scales <paramref name="flat"/> (n) in fp32 block by block: (scaled values (n), absmax per block).</summary>
    public static (Tensor Scaled, Tensor Absmax) Scale(Tensor flat, int blockSize)
    {
        using var scope = NewDisposeScope();
        var values = flat.to(ScalarType.Float32);
        var n = values.numel();
        var remainder = n % blockSize;
        var full = n - remainder;
        var blocks = full / blockSize;
        var whole = values.narrow(0, 0, full).reshape(blocks, blockSize);
        var absmax = whole.abs().amax([-1L]);                                                     // (blocks)
        var scaled = (whole * absmax.clamp_min(1e-38).reciprocal().view(-1, 1)).clamp(-1, 1).reshape(-1);
        if (remainder > 0)
        {
            var tail = values.narrow(0, full, remainder);
            var tailMax = tail.abs().max().clamp_min(1e-38);
            absmax = cat([absmax, tailMax.unsqueeze(0)]);
            scaled = cat([scaled, (tail / tailMax).clamp(-1, 1)]);
        }
        return (scaled.MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope());
    }

    /// <summary>Index (int64) of the nearest entry of the ascending <paramref name="sortedCode"/> for every value.</summary>
    public static Tensor NearestCode(Tensor scaled, float[] sortedCode) => bucketize(scaled, Midpoints(sortedCode, scaled.device));

    /// <summary>
    /// The midpoints of a code book on a device, made once: an optimizer quantizes with them for every chunk of every
    /// parameter at every step, and on a GPU each new tensor from host memory would be a blocking copy.
    /// </summary>
    private static Tensor Midpoints(float[] sortedCode, Device device)
    {
        var key = (sortedCode, device.type, device.index);
        lock (MidpointTables)
        {
            if (MidpointTables.TryGetValue(key, out var cached)) return cached;
            var midpoints = new float[sortedCode.Length - 1];
            for (var i = 0; i < midpoints.Length; i++) midpoints[i] = (sortedCode[i] + sortedCode[i + 1]) / 2f;
            using var normal = inference_mode(false);
            var bounds = tensor(midpoints, device: device).DetachFromDisposeScope();
            MidpointTables[key] = bounds;
            return bounds;
        }
    }

    private static readonly Dictionary<(float[] Code, DeviceType Type, int Index), Tensor> MidpointTables = new(new CodeKeyComparer());

    /// <summary>Code books compared by reference: they are static tables, and their contents never change.</summary>
    private sealed class CodeKeyComparer : IEqualityComparer<(float[] Code, DeviceType Type, int Index)>
    {
        public bool Equals((float[] Code, DeviceType Type, int Index) x, (float[] Code, DeviceType Type, int Index) y) =>
            ReferenceEquals(x.Code, y.Code) && x.Type == y.Type && x.Index == y.Index;

        public int GetHashCode((float[] Code, DeviceType Type, int Index) key) =>
            HashCode.Combine(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(key.Code), key.Type, key.Index);
    }

    /// <summary>
    /// Multiplies <paramref name="values"/> (n, fp32) by the absmax of its block, the trailing partial block by the last.
    /// </summary>
    public static Tensor Rescale(Tensor values, Tensor absmax, int blockSize)
    {
        var n = values.numel();
        var remainder = n % blockSize;
        if (remainder == 0) return (values.view(-1, blockSize) * absmax.view(-1, 1)).reshape(n);
        using var scope = NewDisposeScope();
        var full = n - remainder;
        var blocks = full / blockSize;
        var head = (values.narrow(0, 0, full).view(blocks, blockSize) * absmax.narrow(0, 0, blocks).view(-1, 1)).reshape(full);
        return cat([head, values.narrow(0, full, remainder) * absmax[blocks]]).MoveToOuterDisposeScope();
    }
}
