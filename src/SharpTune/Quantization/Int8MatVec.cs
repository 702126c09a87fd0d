using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// y = x · (q · s/127)ᵀ for a handful of input rows (a decode step), read straight from the int8 codes: each output
/// row's codes are widened to fp32 in registers (AVX-512, or AVX2 with FMA, scalar otherwise), multiplied into fp32
/// accumulators and scaled once by the row's s/127. Nothing of the weight's size is allocated, so a step streams one
/// byte per weight instead of first converting the whole matrix to the compute dtype, which is what the TorchSharp
/// product (<see cref="Int8Weight.MatmulTransposed"/>) does. Output rows are split over libtorch's intra-op thread
/// count. CPU tensors only; other devices and larger batches (prefill, training) use the TorchSharp product.
/// </summary>
internal static class Int8MatVec
{
    /// <summary>Input rows above which a matrix product (weights read once for many rows) is the better tool.</summary>
    public const int MaxRows = 8;

    /// <summary>Whether the kernel serves x (…, in) against <paramref name="weight"/>.</summary>
    public static bool Supports(Tensor x, Int8Weight weight) =>
        Models.InferenceShortcuts.Enabled && x.device_type == TorchSharp.DeviceType.CPU && weight.Codes.device_type == TorchSharp.DeviceType.CPU &&
        x.dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 &&
        x.shape[^1] == weight.InFeatures && x.numel() / weight.InFeatures <= MaxRows && weight.Codes.is_contiguous();

    /// <summary>x (…, in) → (…, out) in x's dtype, accumulated in fp32.</summary>
    public static Tensor Multiply(Tensor x, Int8Weight weight)
    {
        using var scope = NewDisposeScope();
        var (inFeatures, outFeatures) = (weight.InFeatures, weight.OutFeatures);
        var rows = (int)(x.numel() / inFeatures);
        var input = x.reshape(rows, inFeatures).to(ScalarType.Float32).contiguous();
        var scales = weight.RowAbsmax.to(ScalarType.Float32).contiguous();
        var output = empty(rows, outFeatures, dtype: ScalarType.Float32);
        unsafe
        {
            fixed (byte* codes = weight.Codes.bytes)
            fixed (byte* xs = input.bytes)
            fixed (byte* ss = scales.bytes)
            fixed (byte* ys = output.bytes)
            {
                var (c, xp, sp, yp) = ((nint)codes, (nint)xs, (nint)ss, (nint)ys);
                RowParallel.For(outFeatures, (from, to) =>
                    Rows((sbyte*)c, (float*)xp, (float*)sp, (float*)yp, inFeatures, outFeatures, rows, from, to));
            }
        }
        var shape = x.shape.ToArray();
        shape[^1] = outFeatures;
        var y = output.view(shape);
        return (y.dtype == x.dtype ? y : y.to(x.dtype)).MoveToOuterDisposeScope();
    }

    private static unsafe void Rows(sbyte* codes, float* x, float* absmax, float* y, long inFeatures, long outFeatures, int rows,
        long from, long to)
    {
        for (var r = from; r < to; r++)
        {
            var w = codes + r * inFeatures;
            var scale = absmax[r] / 127f;   // as the TorchSharp product computes s / 127 in fp32
            for (var i = 0; i < rows; i++) y[i * outFeatures + r] = Dot(w, x + i * inFeatures, inFeatures) * scale;
        }
    }

    /// <summary>Σ w[j]·x[j] over n int8 codes and fp32 inputs, in fp32.</summary>
    internal static unsafe float Dot(sbyte* w, float* x, long n)
    {
        long j = 0;
        var sum = 0f;
        if (Avx512F.IsSupported && n >= 64)
        {
            Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            for (; j + 64 <= n; j += 64)
            {
                a0 = Avx512F.FusedMultiplyAdd(Widen512(w + j), Avx512F.LoadVector512(x + j), a0);
                a1 = Avx512F.FusedMultiplyAdd(Widen512(w + j + 16), Avx512F.LoadVector512(x + j + 16), a1);
                a2 = Avx512F.FusedMultiplyAdd(Widen512(w + j + 32), Avx512F.LoadVector512(x + j + 32), a2);
                a3 = Avx512F.FusedMultiplyAdd(Widen512(w + j + 48), Avx512F.LoadVector512(x + j + 48), a3);
            }
            for (; j + 16 <= n; j += 16)
                a0 = Avx512F.FusedMultiplyAdd(Widen512(w + j), Avx512F.LoadVector512(x + j), a0);
            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (Avx2.IsSupported && Fma.IsSupported && n >= 32)
        {
            Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
            for (; j + 32 <= n; j += 32)
            {
                a0 = Fma.MultiplyAdd(Widen256(w + j), Avx.LoadVector256(x + j), a0);
                a1 = Fma.MultiplyAdd(Widen256(w + j + 8), Avx.LoadVector256(x + j + 8), a1);
                a2 = Fma.MultiplyAdd(Widen256(w + j + 16), Avx.LoadVector256(x + j + 16), a2);
                a3 = Fma.MultiplyAdd(Widen256(w + j + 24), Avx.LoadVector256(x + j + 24), a3);
            }
            for (; j + 8 <= n; j += 8)
                a0 = Fma.MultiplyAdd(Widen256(w + j), Avx.LoadVector256(x + j), a0);
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; j < n; j++) sum += w[j] * x[j];
        return sum;
    }

    private static unsafe Vector512<float> Widen512(sbyte* w) =>
        Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Sse2.LoadVector128(w)));

    private static unsafe Vector256<float> Widen256(sbyte* w) =>
        Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(w));
}
