using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// y = x · deq(W)ᵀ for a handful of input rows (a decode step) straight from NF4/FP4 codes, in integers as the int8
/// kernel does: the 16-value code book is held as int16 (value · 16383 / max|value|, a relative step of 6·10⁻⁵; 16383, not
/// 32767, so that a block's four products per lane stay below 2³¹) in one register and looked up 32 indices at a time (vpermw); each input row is rounded once to int16 on its own scale and
/// split into the even and odd elements of each block (a byte holds element 2k in its high nibble, 2k+1 in its low);
/// per block of 64 weights two vpmaddwd give int32 partial sums, turned to fp32 and scaled by the block's absmax. No
/// dequantized weight is ever built (the TorchSharp path dequantizes the whole matrix on every call), and the lookups
/// and multiplies take half the instructions of converting every weight to fp32. Rows of 64-multiple width on AVX-512
/// CPUs, in decode steps (inference mode) only; other shapes, devices, batches and training use the TorchSharp product.
/// </summary>
internal static class FourBitMatVec
{
    /// <summary>Largest int16 code value: 2 lanes × 2 products × 16383 × 32767 &lt; 2³¹.</summary>
    private const float CodeRange = 16383f;

    public static bool Supports(Tensor x, FourBitWeight weight) =>
        Avx512BW.IsSupported && Models.InferenceShortcuts.ForCpuKernel(x) && is_inference_mode_enabled() &&
        weight.Packed.device_type == TorchSharp.DeviceType.CPU && x.dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 &&
        weight.InFeatures % FourBitCodec.BlockSize == 0 && x.size(-1) == weight.InFeatures &&
        x.numel() / weight.InFeatures <= Int8MatVec.MaxRows && weight.Packed.is_contiguous();

    /// <summary>x (…, in) → (…, out) in x's dtype, accumulated in int32 per block and fp32 across blocks.</summary>
    public static Tensor Multiply(Tensor x, FourBitWeight weight)
    {
        using var call = new DecodeKernelCall(x, weight.InFeatures, weight.OutFeatures);
        var split = ArrayPool<short>.Shared.Rent(call.Rows * (int)call.InFeatures);
        var inputScales = ArrayPool<float>.Shared.Rent(call.Rows);
        try
        {
            unsafe
            {
                fixed (short* xq = call.Quantized)
                fixed (float* callScales = call.Scales)
                fixed (short* xsplit = split)
                fixed (float* xScale = inputScales)
                fixed (byte* ys = call.Output.bytes)
                    MultiplyQuantized(weight, xq, callScales, xsplit, xScale, (nint)ys, call.OutputDtype == ScalarType.BFloat16, call.Rows);
            }
        }
        finally
        {
            ArrayPool<short>.Shared.Return(split);
            ArrayPool<float>.Shared.Return(inputScales);
        }
        return call.Result();
    }

    /// <summary>
    /// Raw buffers: x (rows, in) → y (rows, out), both bf16 (<paramref name="brain"/>) or fp32, through the packed codes
    /// of <paramref name="weight"/>; <paramref name="widened"/> (rows·in fp32), <paramref name="quantized"/> and
    /// <paramref name="split"/> (rows·in int16 each) and <paramref name="scales"/> (rows) are scratch. The caller has
    /// checked what <see cref="Supports"/> checks.
    /// </summary>
    internal static unsafe void MultiplyRows(nint x, bool brain, FourBitWeight weight, nint y, int rows, float* widened, short* quantized,
        short* split, float* scales)
    {
        DecodeKernelCall.QuantizeRows(x, brain, rows, weight.InFeatures, widened, quantized, scales);
        MultiplyQuantized(weight, quantized, scales, split, scales, y, brain, rows);
    }

    /// <summary>
    /// The product of input rows already rounded to int16 with their <paramref name="inputScales"/>: each row split into
    /// <paramref name="split"/> in the nibbles' order, its scale times the code book's into <paramref name="scales"/>
    /// (may be the same buffer), then the rows split over the kernel threads.
    /// </summary>
    private static unsafe void MultiplyQuantized(FourBitWeight weight, short* quantized, float* inputScales, short* split, float* scales,
        nint y, bool brain, int rows)
    {
        var (inFeatures, outFeatures) = (weight.InFeatures, weight.OutFeatures);
        var (table, codeScale) = Int16Code(weight.Codec.Code);
        for (var i = 0; i < rows; i++)
        {
            scales[i] = inputScales[i] * codeScale;
            SplitEvenOdd(quantized + i * inFeatures, split + i * inFeatures, inFeatures);
        }
        fixed (short* t = table)
        fixed (byte* packed = weight.Packed.bytes)
        fixed (byte* absmax = weight.BlockAbsmaxFloat32().bytes)
        {
            var (tp, p, xp, xsp, sp) = ((nint)t, (nint)packed, (nint)split, (nint)scales, (nint)absmax);
            RowParallel.For(outFeatures, (from, to) =>
                Rows((short*)tp, (byte*)p, (short*)xp, (float*)xsp, (float*)sp, (byte*)y, brain, inFeatures, outFeatures, rows, from, to));
        }
    }

    /// <summary>The code book as 32 int16 lanes (16 used) on the scale 16383 / max|code|, and the factor back.</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<IReadOnlyList<float>, Tuple<short[], float>> Int16Codes = [];

    private static (short[] Table, float Scale) Int16Code(IReadOnlyList<float> code)
    {
        var made = Int16Codes.GetValue(code, c => MakeInt16Code(c).ToTuple());
        return (made.Item1, made.Item2);
    }

    private static (short[] Table, float Scale) MakeInt16Code(IReadOnlyList<float> code)
    {
        var max = code.Max(MathF.Abs);
        var table = new short[32];
        for (var i = 0; i < code.Count; i++) table[i] = (short)MathF.Round(code[i] * CodeRange / max);
        return (table, max / CodeRange);
    }

    /// <summary>Per block of 64: the 32 even-position inputs, then the 32 odd ones (the nibble order of the packed bytes).</summary>
    private static unsafe void SplitEvenOdd(short* x, short* into, long n)
    {
        for (long b = 0; b < n; b += FourBitCodec.BlockSize)
            for (var k = 0; k < 32; k++)
            {
                into[b + k] = x[b + 2 * k];
                into[b + 32 + k] = x[b + 2 * k + 1];
            }
    }

    private static unsafe void Rows(short* table, byte* packed, short* x, float* xScale, float* absmax, byte* y, bool brain, long inFeatures,
        long outFeatures, int rows, long from, long to)
    {
        var code = Avx512BW.LoadVector512(table);
        var lowNibble = Vector512.Create((short)0xF);
        var blocks = inFeatures / FourBitCodec.BlockSize;
        var rowBytes = inFeatures / 2;
        var end = packed + to * rowBytes;
        for (var r = from; r < to; r++)
        {
            var codes = packed + r * rowBytes;
            WeightPrefetch.Lines(codes + WeightPrefetch.RowsAhead * rowBytes, rowBytes, end);
            var scales = absmax + r * blocks;
            var i = 0;
            // Four input rows per pass over the weight row: each block's codes looked up once for the four, each row's
            // sums made as a row alone makes them (the same blocks in the same order), so its outputs do not depend on
            // the rows beside it.
            for (; i + 4 <= rows; i += 4)
            {
                short* x0 = x + i * inFeatures, x1 = x0 + inFeatures, x2 = x1 + inFeatures, x3 = x2 + inFeatures;
                Vector512<float> t0 = Vector512<float>.Zero, t1 = t0, t2 = t0, t3 = t0;
                for (var b = 0; b < blocks; b++)
                {
                    var (high, low) = Lookup(codes + b * 32, code, lowNibble);
                    var scale = Vector512.Create(scales[b]);
                    var at = b * 64;
                    (t0, t1, t2, t3) = (AddBlock(high, low, x0 + at, scale, t0), AddBlock(high, low, x1 + at, scale, t1),
                        AddBlock(high, low, x2 + at, scale, t2), AddBlock(high, low, x3 + at, scale, t3));
                }
                DecodeKernelCall.Store(y, brain, i * outFeatures + r, Vector512.Sum(t0) * xScale[i]);
                DecodeKernelCall.Store(y, brain, (i + 1) * outFeatures + r, Vector512.Sum(t1) * xScale[i + 1]);
                DecodeKernelCall.Store(y, brain, (i + 2) * outFeatures + r, Vector512.Sum(t2) * xScale[i + 2]);
                DecodeKernelCall.Store(y, brain, (i + 3) * outFeatures + r, Vector512.Sum(t3) * xScale[i + 3]);
            }
            for (; i < rows; i++)
            {
                var xs = x + i * inFeatures;
                var total = Vector512<float>.Zero;
                for (var b = 0; b < blocks; b++)
                {
                    var (high, low) = Lookup(codes + b * 32, code, lowNibble);
                    total = AddBlock(high, low, xs + b * 64, Vector512.Create(scales[b]), total);
                }
                DecodeKernelCall.Store(y, brain, i * outFeatures + r, Vector512.Sum(total) * xScale[i]);
            }
        }
    }

    /// <summary>One block's 64 code values as int16, from its 32 bytes: elements 0, 2, …, 62 (high nibbles), then 1, 3, …, 63.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe (Vector512<short> High, Vector512<short> Low) Lookup(byte* blockCodes, Vector512<short> code, Vector512<short> lowNibble)
    {
        var bytes = Avx512BW.ConvertToVector512Int16(Avx.LoadVector256(blockCodes));   // 32 bytes → 32 words
        return (Avx512BW.PermuteVar32x16(code, Avx512BW.ShiftRightLogical(bytes, 4)), Avx512BW.PermuteVar32x16(code, bytes & lowNibble));
    }

    /// <summary>A block's integer products with one input row's 64 split values (<paramref name="xs"/>), scaled by its absmax, added to <paramref name="total"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> AddBlock(Vector512<short> high, Vector512<short> low, short* xs, Vector512<float> scale, Vector512<float> total) =>
        Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(
            Avx512BW.MultiplyAddAdjacent(high, Avx512BW.LoadVector512(xs)) + Avx512BW.MultiplyAddAdjacent(low, Avx512BW.LoadVector512(xs + 32))),
            scale, total);
}
