using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// RoPE of a decode step's query and key heads in one pass on the CPU, straight from the fused q/k/v product: the
/// tensor form (<see cref="RotaryEmbedding.ApplyRotation"/>) is four libtorch calls a layer (a product, a roll, a
/// product, a sum), each allocating, on a few thousand values, which costs more than the arithmetic (measured on M in
/// bf16: ~20 µs a layer through libtorch). A prompt's tokens take the same pass (<see cref="TryRotateTokens"/>),
/// which reads and writes each value once where the tensor form's four calls each read and write the whole block.
/// Same roundings as the tensor form: x·cos and roll(x)·signed sin each rounded to the activation dtype, then their
/// sum rounded once; in fp32 the two products and the sum, unfused.
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
        if (!Serves(qkv, headDim, tables) || !qkv.is_contiguous() || batch > Quantization.Int8MatVec.MaxRows) return null;
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
    /// x (B, T, heads·hd), each token's heads contiguous (a view of a fused product's queries or keys will do), rotated by
    /// the tables (B or 1, 1, T, hd) into a new (B, T, heads, hd); null when the kernel does not apply (as
    /// <see cref="TryRotate"/>; also a token stride that is not a whole number of heads).
    /// </summary>
    public static Tensor? TryRotateTokens(Tensor x, int heads, int headDim, (Tensor Cos, Tensor SignedSin) tables)
    {
        var dtype = x.dtype;
        var (cos, sin) = tables;
        if (!Serves(x, headDim, tables) || x.dim() != 3 || x.size(2) != (long)heads * headDim || x.stride(2) != 1) return null;
        var (batch, tokens) = (x.size(0), x.size(1));
        var rowStride = x.stride(1);
        var tableRows = cos.numel() / headDim;
        if (rowStride % headDim != 0 || (batch > 1 && x.stride(0) != tokens * rowStride) || (tableRows != tokens && tableRows != batch * tokens))
            return null;
        var output = empty([batch, tokens, heads, headDim], dtype);
        RotateRows(DecodeLayerStack.ViewStart(x), DecodeLayerStack.Pointer(output), batch * tokens, rowStride / headDim, heads, headDim,
            DecodeLayerStack.Pointer(cos), DecodeLayerStack.Pointer(sin), tableRows, dtype == ScalarType.BFloat16);
        return output;
    }

    /// <summary>
    /// What both entries need: activations and tables of the same dtype (fp32 or bf16) on the CPU without gradients,
    /// contiguous tables as wide as an even head.
    /// </summary>
    private static bool Serves(Tensor x, int headDim, (Tensor Cos, Tensor SignedSin) tables)
    {
        var (cos, sin) = tables;
        return x.dtype is ScalarType.Float32 or ScalarType.BFloat16 && InferenceShortcuts.ForExactCpuKernel(x) && cos.dtype == x.dtype &&
               sin.dtype == x.dtype && cos.is_contiguous() && sin.is_contiguous() && headDim % 2 == 0 && cos.numel() == sin.numel() &&
               cos.size(-1) == headDim;
    }

    /// <summary>
    /// Raw buffers: the first <paramref name="rotatedHeads"/> of each row's <paramref name="inputHeads"/> heads of x,
    /// rotated into y (batch, rotatedHeads, hd); row r takes table row r mod <paramref name="tableRows"/> (one table for
    /// all, one per row, or one per token of each of a prompt's rows).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void RotateRows(nint x, nint y, long batch, long inputHeads, int rotatedHeads, int headDim, nint cos, nint sin,
        long tableRows, bool brain)
    {
        for (long b = 0; b < batch; b++)
        {
            var table = b % tableRows * headDim;
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
        if (Avx512F.IsSupported && half % 16 == 0)
        {
            for (var i = 0; i < half; i += 16)
            {
                var (first, second) = (Avx512F.LoadVector512(x + i), Avx512F.LoadVector512(x + i + half));
                Avx512F.Store(y + i, first * Avx512F.LoadVector512(cos + i) + second * Avx512F.LoadVector512(sin + i));
                Avx512F.Store(y + i + half, second * Avx512F.LoadVector512(cos + i + half) + first * Avx512F.LoadVector512(sin + i + half));
            }
            return;
        }
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
        if (Avx512F.IsSupported && half % 16 == 0)
        {
            // Each product rounded to bf16, then their sum: the tensor form's three bf16 operations.
            for (var i = 0; i < half; i += 16)
            {
                var (first, second) = (BFloat16Bits.Widen16(x + i), BFloat16Bits.Widen16(x + i + half));
                BFloat16Bits.Round16(BFloat16Bits.Rounded16(first * BFloat16Bits.Widen16(cos + i)) +
                                     BFloat16Bits.Rounded16(second * BFloat16Bits.Widen16(sin + i)), y + i);
                BFloat16Bits.Round16(BFloat16Bits.Rounded16(second * BFloat16Bits.Widen16(cos + i + half)) +
                                     BFloat16Bits.Rounded16(first * BFloat16Bits.Widen16(sin + i + half)), y + i + half);
            }
            return;
        }
        for (var i = 0; i < hd; i++)
        {
            var cosine = BFloat16Bits.ToSingle(BFloat16Bits.Round(BFloat16Bits.ToSingle(x[i]) * BFloat16Bits.ToSingle(cos[i])));
            var sine = BFloat16Bits.ToSingle(BFloat16Bits.Round(BFloat16Bits.ToSingle(x[i < half ? i + half : i - half]) * BFloat16Bits.ToSingle(sin[i])));
            y[i] = BFloat16Bits.Round(cosine + sine);
        }
    }
}
