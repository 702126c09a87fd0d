using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// RoPE of a decode step's query and key heads in one pass on the CPU, straight from the fused q/k/v product: the
/// tensor form (<see cref="RotaryEmbedding.ApplyRotation"/>) is four libtorch calls a layer (a product, a roll, a
/// product, a sum), each allocating, on a few thousand values, which costs more than the arithmetic (measured on M in
/// bf16: ~20 µs a layer through libtorch). Same roundings as the tensor form: x·cos and roll(x)·signed sin each
/// rounded to the activation dtype, then their sum rounded once; in fp32 the two products and the sum, unfused.
/// </summary>
internal static class RotaryDecodeKernel
{
    /// <summary>
    /// The first <paramref name="rotatedHeads"/> heads of qkv (B, 1, heads·hd), rotated by the tables (B or 1, 1, 1, hd),
    /// as (B, rotatedHeads, 1, hd); null when the kernel does not apply (rotary dim below the head dim, gradients, other
    /// devices or dtypes, more rows than a decode step has).
    /// </summary>
    public static Tensor? TryRotate(Tensor qkv, long batch, int rotatedHeads, int headDim, (Tensor Cos, Tensor SignedSin) tables)
    {
        var dtype = qkv.dtype;
        var (cos, sin) = tables;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || !InferenceShortcuts.ForCpuKernel(qkv) || !qkv.is_contiguous() ||
            cos.dtype != dtype || sin.dtype != dtype || !cos.is_contiguous() || !sin.is_contiguous() || headDim % 2 != 0 ||
            batch > Quantization.Int8MatVec.MaxRows || cos.numel() != sin.numel() || cos.size(-1) != headDim)
            return null;
        var tableRows = cos.numel() / headDim;
        if (tableRows != 1 && tableRows != batch) return null;
        var inputHeads = qkv.numel() / (batch * headDim);
        if (inputHeads < rotatedHeads || inputHeads * batch * headDim != qkv.numel()) return null;
        var output = empty([batch, rotatedHeads, 1, headDim], dtype);
        unsafe
        {
            fixed (byte* x = qkv.bytes)
            fixed (byte* y = output.bytes)
            fixed (byte* c = cos.bytes)
            fixed (byte* s = sin.bytes)
                RotateRows((nint)x, (nint)y, batch, inputHeads, rotatedHeads, headDim, (nint)c, (nint)s, tableRows, dtype == ScalarType.BFloat16);
        }
        return output;
    }

    /// <summary>
    /// Raw buffers: the first <paramref name="rotatedHeads"/> of each row's <paramref name="inputHeads"/> heads of x,
    /// rotated into y (batch, rotatedHeads, hd); tables of one row for all, or one per row.
    /// </summary>
    internal static unsafe void RotateRows(nint x, nint y, long batch, long inputHeads, int rotatedHeads, int headDim, nint cos, nint sin,
        long tableRows, bool brain)
    {
        for (long b = 0; b < batch; b++)
        {
            var table = tableRows == 1 ? 0 : b * headDim;
            for (long h = 0; h < rotatedHeads; h++)
            {
                var (from, to) = ((b * inputHeads + h) * headDim, (b * rotatedHeads + h) * headDim);
                if (!brain)
                    Rotate((float*)x + from, (float*)y + to, (float*)cos + table, (float*)sin + table, headDim);
                else
                    Rotate((ushort*)x + from, (ushort*)y + to, (ushort*)cos + table, (ushort*)sin + table, headDim);
            }
        }
    }

    /// <summary>y = x·cos + roll(x, hd/2)·signed sin, where roll(x, hd/2)[i] = x[(i + hd/2) mod hd].</summary>
    private static unsafe void Rotate(float* x, float* y, float* cos, float* sin, int hd)
    {
        var half = hd / 2;
        for (var i = 0; i < hd; i++)
        {
            var cosine = x[i] * cos[i];
            var sine = x[i < half ? i + half : i - half] * sin[i];
            y[i] = cosine + sine;
        }
    }

    private static unsafe void Rotate(ushort* x, ushort* y, ushort* cos, ushort* sin, int hd)
    {
        var half = hd / 2;
        for (var i = 0; i < hd; i++)
        {
            var cosine = BFloat16Bits.ToSingle(BFloat16Bits.Round(BFloat16Bits.ToSingle(x[i]) * BFloat16Bits.ToSingle(cos[i])));
            var sine = BFloat16Bits.ToSingle(BFloat16Bits.Round(BFloat16Bits.ToSingle(x[i < half ? i + half : i - half]) * BFloat16Bits.ToSingle(sin[i])));
            y[i] = BFloat16Bits.Round(cosine + sine);
        }
    }
}
