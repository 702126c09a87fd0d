using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// y = x · deq(W)ᵀ for a handful of input rows (a decode step) straight from NF4/FP4 codes: per block of 64 weights the
/// 4-bit indices are looked up in the 16-entry code book held in one AVX-512 register (vpermps), multiplied into fp32
/// accumulators with the inputs and the block sum scaled by the block's absmax, so no dequantized weight is ever built
/// (the TorchSharp path dequantizes the whole matrix on every call). Rows of 64-multiple width only (blocks then never
/// straddle two rows); other shapes, devices, larger batches and CPUs without AVX-512 use the TorchSharp product.
/// </summary>
internal static class FourBitMatVec
{
    public static bool Supports(Tensor x, FourBitWeight weight) =>
        Avx512F.IsSupported && Models.InferenceShortcuts.Enabled && x.device_type == TorchSharp.DeviceType.CPU &&
        weight.Packed.device_type == TorchSharp.DeviceType.CPU && x.dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 &&
        weight.InFeatures % FourBitCodec.BlockSize == 0 && x.shape[^1] == weight.InFeatures &&
        x.numel() / weight.InFeatures <= Int8MatVec.MaxRows && weight.Packed.is_contiguous();

    /// <summary>x (…, in) → (…, out) in x's dtype, accumulated in fp32.</summary>
    public static Tensor Multiply(Tensor x, FourBitWeight weight)
    {
        using var scope = NewDisposeScope();
        var (inFeatures, outFeatures) = (weight.InFeatures, weight.OutFeatures);
        var rows = (int)(x.numel() / inFeatures);
        // Each byte holds elements 2k (high nibble) and 2k+1 (low): split the inputs the same way, once per call, so the
        // kernel multiplies the looked-up high values with the even inputs and the low ones with the odd.
        var pairs = x.reshape(rows, inFeatures / 32, 16, 2).to(ScalarType.Float32);
        var split = stack([pairs.select(-1, 0), pairs.select(-1, 1)], 2).contiguous();          // (rows, in/32, 2, 16)
        var absmax = weight.BlockAbsmaxFloat32();
        var output = empty(rows, outFeatures, dtype: ScalarType.Float32);
        var code = weight.Codec.Code.ToArray();
        unsafe
        {
            fixed (float* table = code)
            fixed (byte* packed = weight.Packed.bytes)
            fixed (byte* xs = split.bytes)
            fixed (byte* scales = absmax.bytes)
            fixed (byte* ys = output.bytes)
            {
                var (t, p, xp, sp, yp) = ((nint)table, (nint)packed, (nint)xs, (nint)scales, (nint)ys);
                RowParallel.For(outFeatures, (from, to) =>
                    Rows((float*)t, (byte*)p, (float*)xp, (float*)sp, (float*)yp, inFeatures, outFeatures, rows, from, to));
            }
        }
        var shape = x.shape.ToArray();
        shape[^1] = outFeatures;
        var y = output.view(shape);
        return (y.dtype == x.dtype ? y : y.to(x.dtype)).MoveToOuterDisposeScope();
    }

    private static unsafe void Rows(float* table, byte* packed, float* x, float* absmax, float* y, long inFeatures, long outFeatures,
        int rows, long from, long to)
    {
        var code = Avx512F.LoadVector512(table);
        var blocks = inFeatures / FourBitCodec.BlockSize;
        for (var r = from; r < to; r++)
        {
            var codes = packed + r * (inFeatures / 2);
            var scales = absmax + r * blocks;
            for (var i = 0; i < rows; i++)
            {
                var xs = x + i * inFeatures;
                var total = Vector512<float>.Zero;
                for (var b = 0; b < blocks; b++)
                {
                    // 64 weights = 32 bytes = two halves of 16 bytes; each half covers 32 inputs (16 even, 16 odd).
                    var bytes = codes + b * 32;
                    var inputs = xs + b * 64;
                    var first = Widen(bytes);           // elements 0–31 of the block: high nibbles even, low odd
                    var second = Widen(bytes + 16);     // elements 32–63
                    var block = Avx512F.Multiply(Lookup(code, Avx512F.ShiftRightLogical(first, 4)), Avx512F.LoadVector512(inputs));
                    block = Avx512F.FusedMultiplyAdd(Lookup(code, first & LowNibble), Avx512F.LoadVector512(inputs + 16), block);
                    block = Avx512F.FusedMultiplyAdd(Lookup(code, Avx512F.ShiftRightLogical(second, 4)), Avx512F.LoadVector512(inputs + 32), block);
                    block = Avx512F.FusedMultiplyAdd(Lookup(code, second & LowNibble), Avx512F.LoadVector512(inputs + 48), block);
                    total = Avx512F.FusedMultiplyAdd(block, Vector512.Create(scales[b]), total);
                }
                y[i * outFeatures + r] = Vector512.Sum(total);
            }
        }
    }

    private static Vector512<int> LowNibble => Vector512.Create(0xF);

    private static unsafe Vector512<int> Widen(byte* bytes) => Avx512F.ConvertToVector512Int32(Sse2.LoadVector128(bytes));

    private static Vector512<float> Lookup(Vector512<float> code, Vector512<int> indices) =>
        Avx512F.PermuteVar16x32(code, indices);
}
