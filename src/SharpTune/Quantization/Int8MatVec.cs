using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// y = x · (q · s/127)ᵀ for a handful of input rows (a decode step), read straight from the int8 codes with integer
/// multiply–adds: each input row is rounded once to int16 on its own scale (max|x| / 32767, a relative step of 3·10⁻⁵,
/// far below the bf16 rounding of the activations themselves), and 32 weights at a time are widened to int16 and
/// multiplied into int32 pairs (vpmaddwd: AVX-512BW, or AVX2), then scaled once by the row's s/127 and the input's
/// scale. Converting each weight to fp32 instead (what LLM.int8's dequantize path and our first kernel did) costs two
/// conversions per 16 weights and bounded the kernel by arithmetic, not memory. Nothing of the weight's size is
/// allocated. Output rows are split over <see cref="RowParallel"/>'s threads. CPU tensors only; other devices and larger
/// batches (prefill, training) use the TorchSharp product.
/// </summary>
internal static class Int8MatVec
{
    /// <summary>Input rows above which a matrix product (weights read once for many rows) is the better tool.</summary>
    public const int MaxRows = 8;

    /// <summary>
    /// Multiply–add steps an int32 lane takes before it is added into fp32: each adds two products of at most
    /// 128·32767, so 128 steps stay below 2³¹ with room to spare.
    /// </summary>
    private const int FlushSteps = 128;

    /// <summary>
    /// Whether the kernel serves x (…, in) against <paramref name="weight"/>: decode steps only (they run in inference
    /// mode); a small training or evaluation batch keeps the exact product of the dequantized weight.
    /// </summary>
    public static bool Supports(Tensor x, Int8Weight weight) =>
        Models.InferenceShortcuts.ForCpuKernel(x) && is_inference_mode_enabled() && weight.Codes.device_type == TorchSharp.DeviceType.CPU &&
        x.dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 &&
        x.size(-1) == weight.InFeatures && x.numel() / weight.InFeatures <= MaxRows && weight.Codes.is_contiguous();

    /// <summary>x (…, in) → (…, out) in x's dtype, accumulated in int32 and fp32.</summary>
    public static Tensor Multiply(Tensor x, Int8Weight weight)
    {
        using var call = new DecodeKernelCall(x, weight.InFeatures, weight.OutFeatures);
        unsafe
        {
            fixed (short* xq = call.Quantized)
            fixed (float* xScale = call.Scales)
            fixed (byte* ys = call.Output.bytes)
                MultiplyQuantized(weight, xq, xScale, (nint)ys, call.OutputDtype == ScalarType.BFloat16, call.Rows);
        }
        return call.Result();
    }

    /// <summary>
    /// Raw buffers: x (rows, in) → y (rows, out), both bf16 (<paramref name="brain"/>) or fp32, through the codes of
    /// <paramref name="weight"/>; <paramref name="widened"/> (rows·in fp32), <paramref name="quantized"/> (rows·in int16)
    /// and <paramref name="scales"/> (rows) are scratch. The caller has checked what <see cref="Supports"/> checks.
    /// </summary>
    internal static unsafe void MultiplyRows(nint x, bool brain, Int8Weight weight, nint y, int rows, float* widened, short* quantized, float* scales)
    {
        DecodeKernelCall.QuantizeRows(x, brain, rows, weight.InFeatures, widened, quantized, scales);
        MultiplyQuantized(weight, quantized, scales, y, brain, rows);
    }

    /// <summary>The product of input rows already rounded to int16 (with their scales), split over the kernel threads.</summary>
    private static unsafe void MultiplyQuantized(Int8Weight weight, short* quantized, float* scales, nint y, bool brain, int rows)
    {
        var (inFeatures, outFeatures) = (weight.InFeatures, weight.OutFeatures);
        fixed (byte* codes = weight.Codes.bytes)
        fixed (byte* absmax = weight.RowAbsmaxFloat32().bytes)
        {
            var (c, xp, xsp, sp) = ((nint)codes, (nint)quantized, (nint)scales, (nint)absmax);
            RowParallel.For(outFeatures, (from, to) =>
                Rows((sbyte*)c, (short*)xp, (float*)xsp, (float*)sp, (byte*)y, brain, inFeatures, outFeatures, rows, from, to));
        }
    }

    /// <summary>x → round(x / scale) in int16 with scale = max|x| / 32767; returns the scale (0 for an all-zero row).</summary>
    internal static unsafe float RoundToInt16(float* x, short* into, long n)
    {
        var max = 0f;
        for (long j = 0; j < n; j++) max = MathF.Max(max, MathF.Abs(x[j]));
        if (max == 0 || !float.IsFinite(max))
        {
            // Zeros stay exact; a non-finite input has no integer form, and NaN/∞ outputs are what the float product gives.
            for (long j = 0; j < n; j++) into[j] = 0;
            return max == 0 ? 0 : float.NaN;
        }
        var inverse = 32767f / max;
        for (long j = 0; j < n; j++) into[j] = (short)MathF.Round(x[j] * inverse);
        return max / 32767f;
    }

    private static unsafe void Rows(sbyte* codes, short* x, float* xScale, float* absmax, byte* y, bool brain, long inFeatures, long outFeatures,
        int rows, long from, long to)
    {
        var end = (byte*)(codes + to * inFeatures);
        for (var r = from; r < to; r++)
        {
            var w = codes + r * inFeatures;
            WeightPrefetch.Lines((byte*)(w + WeightPrefetch.RowsAhead * inFeatures), inFeatures, end);
            var scale = absmax[r] / 127f;   // as the TorchSharp product computes s / 127 in fp32
            var i = 0;
            for (; Avx512BW.IsSupported && i + 4 <= rows; i += 4)
            {
                var sums = DotFour(w, x + i * inFeatures, inFeatures);
                for (var k = 0; k < 4; k++)
                    DecodeKernelCall.Store(y, brain, (i + k) * outFeatures + r, sums.GetElement(k) * (scale * xScale[i + k]));
            }
            for (; i < rows; i++)
                DecodeKernelCall.Store(y, brain, i * outFeatures + r, Dot(w, x + i * inFeatures, inFeatures) * (scale * xScale[i]));
        }
    }

    /// <summary>
    /// <see cref="Dot"/> of one row of codes with four consecutive int16 input rows (n apart), on AVX-512: each vector of
    /// codes widened once for the four, each row's integer sums flushed to fp32 at the same points as <see cref="Dot"/>'s,
    /// so its result is the one a row alone gets.
    /// </summary>
    private static unsafe Vector128<float> DotFour(sbyte* w, short* x, long n)
    {
        short* x0 = x, x1 = x + n, x2 = x1 + n, x3 = x2 + n;
        long j = 0;
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
        var whole = n & ~31L;
        while (j < whole)
        {
            Vector512<int> c0 = Vector512<int>.Zero, c1 = c0, c2 = c0, c3 = c0;
            for (var end = Math.Min(whole, j + FlushSteps * 32L); j < end; j += 32)
            {
                var codes = Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(w + j));
                c0 += Avx512BW.MultiplyAddAdjacent(codes, Avx512BW.LoadVector512(x0 + j));
                c1 += Avx512BW.MultiplyAddAdjacent(codes, Avx512BW.LoadVector512(x1 + j));
                c2 += Avx512BW.MultiplyAddAdjacent(codes, Avx512BW.LoadVector512(x2 + j));
                c3 += Avx512BW.MultiplyAddAdjacent(codes, Avx512BW.LoadVector512(x3 + j));
            }
            s0 += Vector512.Sum(Avx512F.ConvertToVector512Single(c0));
            s1 += Vector512.Sum(Avx512F.ConvertToVector512Single(c1));
            s2 += Vector512.Sum(Avx512F.ConvertToVector512Single(c2));
            s3 += Vector512.Sum(Avx512F.ConvertToVector512Single(c3));
        }
        int t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        for (; j < n; j++) (t0, t1, t2, t3) = (t0 + w[j] * x0[j], t1 + w[j] * x1[j], t2 + w[j] * x2[j], t3 + w[j] * x3[j]);
        return Vector128.Create(s0 + t0, s1 + t1, s2 + t2, s3 + t3);
    }

    /// <summary>Σ w[j]·x[j] over n int8 codes and int16 inputs, exact in integers, returned in fp32.</summary>
    internal static unsafe float Dot(sbyte* w, short* x, long n)
    {
        long j = 0;
        var sum = 0f;
        if (Avx512BW.IsSupported)
        {
            var whole = n & ~31L;
            while (j < whole)
            {
                var acc = Vector512<int>.Zero;
                for (var end = Math.Min(whole, j + FlushSteps * 32L); j < end; j += 32)
                    acc += Avx512BW.MultiplyAddAdjacent(Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(w + j)), Avx512BW.LoadVector512(x + j));
                sum += Vector512.Sum(Avx512F.ConvertToVector512Single(acc));
            }
        }
        else if (Avx2.IsSupported)
        {
            var whole = n & ~15L;
            while (j < whole)
            {
                var acc = Vector256<int>.Zero;
                for (var end = Math.Min(whole, j + FlushSteps * 16L); j < end; j += 16)
                    acc += Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Sse2.LoadVector128(w + j)), Avx.LoadVector256(x + j));
                sum += Vector256.Sum(Avx.ConvertToVector256Single(acc));
            }
        }
        var tail = 0;
        for (; j < n; j++) tail += w[j] * x[j];
        return sum + tail;
    }
}
