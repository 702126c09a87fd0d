using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// <see cref="RmsNorm"/> without gradients in one pass a row on the CPU, 16 values at a time: a decode step's few rows,
/// where the tensor form is eight libtorch calls on a vector of a few hundred values (two norms a layer, every step),
/// and a prefill's or an evaluation batch's. Same arithmetic and roundings
/// as the tensor form: the mean of squares and its inverse root in fp32; Llama's form rounds the normalised values to
/// the activations' dtype and then multiplies by w in that dtype; Gemma's multiplies by (1 + w) in fp32 and rounds once.
/// fp32 or bf16 activations with a weight of the same dtype (Gemma: fp32 or the same); no gradient recorded.
/// </summary>
internal static class RmsNormKernel
{
    /// <summary>
    /// Rows above this go through the tensor form. Up to it the kernel serves a prefill's or an evaluation batch's rows
    /// too, on one thread: the tensor form's eight calls each read and write the whole block (measured on M's 128-token
    /// bf16 prefill: ~0.17 ms a norm, some 4 ms of the prefill's ~55).
    /// </summary>
    private const long MaxRows = 4096;

    public static Tensor? TryNormalize(Tensor x, Tensor weight, double eps, bool unitOffset)
    {
        var dtype = x.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || (weight.dtype != dtype && !(unitOffset && weight.dtype == ScalarType.Float32)) ||
            !InferenceShortcuts.ForCpuKernel(x)) return null;
        var shape = x.Sizes();
        var width = shape[^1];
        var rows = x.numel() / Math.Max(1, width);
        if (rows > MaxRows || width == 0 || weight.numel() != width) return null;
        // A strided view (a fused product's q or k heads) is copied first rather than sent to the tensor form, so that
        // the same values give the same result whatever their layout (an adapter that unfuses q/k/v must change nothing).
        using var rowsInOrder = x.is_contiguous() ? null : x.contiguous();
        if (rowsInOrder is not null) x = rowsInOrder;
        var output = empty(shape, dtype);
        unsafe
        {
            fixed (byte* xs = x.bytes)
            fixed (byte* ws = weight.bytes)
            fixed (byte* ys = output.bytes)
            {
                var n = (int)width;
                for (var r = 0; r < rows; r++)
                {
                    if (dtype == ScalarType.Float32)
                        Row((float*)xs + r * n, (float*)ws, null, (float*)ys + r * n, null, n, (float)eps, unitOffset);
                    else if (weight.dtype == ScalarType.Float32)
                        Row(null, (float*)ws, (ushort*)xs + r * n, null, (ushort*)ys + r * n, n, (float)eps, unitOffset);
                    else
                        BrainRow((ushort*)xs + r * n, (ushort*)ws, (ushort*)ys + r * n, n, (float)eps, unitOffset);
                }
            }
        }
        return output;
    }

    /// <summary>
    /// Llama's form over raw buffers: <paramref name="rows"/> rows of width <paramref name="n"/>, activations and weight
    /// both bf16 (<paramref name="brain"/>) or both fp32.
    /// </summary>
    internal static unsafe void NormalizeRows(nint x, nint weight, nint y, int rows, int n, float eps, bool brain)
    {
        for (var r = 0; r < rows; r++)
            if (brain) BrainRow((ushort*)x + r * n, (ushort*)weight, (ushort*)y + r * n, n, eps, unitOffset: false);
            else Row((float*)x + r * n, (float*)weight, null, (float*)y + r * n, null, n, eps, unitOffset: false);
    }

    /// <summary>fp32 activations (or bf16 ones with Gemma's fp32 weight): one row.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Row(float* x, float* w, ushort* xBits, float* y, ushort* yBits, int n, float eps, bool unitOffset)
    {
        if (Vectorised(n))
        {
            var scale = Vector512.Create(Inverse(SumOfSquares(x, xBits, n), n, eps));
            for (var i = 0; i < n; i += 16)
            {
                var normed = Load(x, xBits, i) * scale;
                var weight = Avx512F.LoadVector512(w + i);
                var value = unitOffset ? normed * (Vector512<float>.One + weight) : weight * normed;
                if (y != null) Avx512F.Store(y + i, value);
                else BFloat16Bits.Round16(value, yBits + i);
            }
            return;
        }
        var sum = 0f;
        for (var i = 0; i < n; i++)
        {
            var v = x != null ? x[i] : BFloat16Bits.ToSingle(xBits[i]);
            sum += v * v;
        }
        var inverse = Inverse(sum, n, eps);
        for (var i = 0; i < n; i++)
        {
            var normed = (x != null ? x[i] : BFloat16Bits.ToSingle(xBits[i])) * inverse;
            var value = unitOffset ? normed * (1f + w[i]) : w[i] * normed;
            if (y != null) y[i] = value;
            else yBits[i] = BFloat16Bits.Round(value);
        }
    }

    /// <summary>bf16 activations and weight: normalised values rounded to bf16, then (Llama) times w rounded again.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static unsafe void BrainRow(ushort* x, ushort* w, ushort* y, int n, float eps, bool unitOffset)
    {
        if (Vectorised(n))
        {
            var scale = Vector512.Create(Inverse(SumOfSquares(null, x, n), n, eps));
            for (var i = 0; i < n; i += 16)
            {
                var normed = BFloat16Bits.Widen16(x + i) * scale;
                var weight = BFloat16Bits.Widen16(w + i);
                var value = unitOffset ? normed * (Vector512<float>.One + weight) : BFloat16Bits.Rounded16(normed) * weight;
                BFloat16Bits.Round16(value, y + i);
            }
            return;
        }
        var sum = 0f;
        for (var i = 0; i < n; i++)
        {
            var v = BFloat16Bits.ToSingle(x[i]);
            sum += v * v;
        }
        var inverse = Inverse(sum, n, eps);
        for (var i = 0; i < n; i++)
        {
            var normed = BFloat16Bits.ToSingle(x[i]) * inverse;
            y[i] = unitOffset
                ? BFloat16Bits.Round(normed * (1f + BFloat16Bits.ToSingle(w[i])))
                : BFloat16Bits.Round(BFloat16Bits.ToSingle(BFloat16Bits.Round(normed)) * BFloat16Bits.ToSingle(w[i]));
        }
    }

    private static bool Vectorised(int n) => Avx512F.IsSupported && n % 16 == 0;

    /// <summary>1/√(mean of squares + ε), as the tensor form computes it.</summary>
    private static float Inverse(float sumOfSquares, int n, float eps) => 1f / MathF.Sqrt(sumOfSquares / n + eps);

    /// <summary>16 values at <paramref name="i"/> in fp32, from the fp32 row if given, else from the bf16 one.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> Load(float* x, ushort* bits, int i) =>
        x != null ? Avx512F.LoadVector512(x + i) : BFloat16Bits.Widen16(bits + i);

    /// <summary>Σx² of a row of fp32 (<paramref name="x"/>) or bf16 values, 64 at a time in four running sums.</summary>
    private static unsafe float SumOfSquares(float* x, ushort* bits, int n)
    {
        Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        var i = 0;
        for (; i + 64 <= n; i += 64)
        {
            var (v0, v1, v2, v3) = (Load(x, bits, i), Load(x, bits, i + 16), Load(x, bits, i + 32), Load(x, bits, i + 48));
            a0 = Avx512F.FusedMultiplyAdd(v0, v0, a0);
            a1 = Avx512F.FusedMultiplyAdd(v1, v1, a1);
            a2 = Avx512F.FusedMultiplyAdd(v2, v2, a2);
            a3 = Avx512F.FusedMultiplyAdd(v3, v3, a3);
        }
        for (; i < n; i += 16)
        {
            var v = Load(x, bits, i);
            a0 = Avx512F.FusedMultiplyAdd(v, v, a0);
        }
        return Vector512.Sum((a0 + a1) + (a2 + a3));
    }
}
