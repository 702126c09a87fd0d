using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// NF4/FP4 codes → the compute dtype (bf16 or fp32) on the CPU in one pass, for the training forward and backward,
/// which dequantize every layer's weight at every step. The TorchSharp path (<see cref="FourBitCodec"/>) makes three
/// full-size tensors on the way — the fp32 values from a pair table, their product with the block scales, the cast —
/// and reads and writes each; here each block of 64 weights scales the 16-entry code book once by its absmax (in fp32,
/// the same product the TorchSharp path computes, then rounded to bf16 to nearest-even as libtorch rounds), keeps it in
/// one AVX-512 register, and turns 32 packed bytes into 64 output values with table lookups (vpermw for bf16, vpermps
/// for fp32). The result is bit for bit what the TorchSharp path gives (tested). Other dtypes, devices, shapes whose size
/// is not a multiple of 64 and CPUs without AVX-512BW use the TorchSharp path.
/// The output is written with non-temporal stores: in a training step each dequantization follows a matrix product
/// whose output fills the caches with dirty lines, and ordinary stores of the 1–3 MB weight had to evict them first
/// (read for ownership, then write-back). Measured on M's shapes, interleaved with the products as in a step: a
/// 768 × 2048 weight took ~0.5 ms with ordinary stores and ~0.23 ms with non-temporal ones, and the product that reads it
/// next from memory was no slower.
/// <para>
/// It runs on the calling thread alone. Every dequantization sits between two of libtorch's operations, and libtorch's
/// OpenMP team spins for a while after each parallel region on the cores it used, so a second thread from .NET's pool
/// waited for a core behind that spinning and the caller waited for it. Measured on M, NF4, bf16 compute: prefill (128
/// tokens) 1,256–1,425 tok/s on one thread against 929–1,053 on two, and a LoRA training step 1 % faster (interleaved in
/// one process, in either order); alone, a pass over M's decoder weights takes 17.0 ms on one thread and 13.2 on two.
/// </para>
/// </summary>
internal static class FourBitDequantizer
{
    public static bool Supports(FourBitWeight weight, ScalarType dtype) =>
        Avx512BW.IsSupported && dtype is ScalarType.BFloat16 or ScalarType.Float32 &&
        weight.Packed.device_type == TorchSharp.DeviceType.CPU && weight.ElementCount % FourBitCodec.BlockSize == 0 &&
        weight.Packed.is_contiguous();

    /// <summary>The (out, in) weight in <paramref name="dtype"/> (bf16 or fp32; see <see cref="Supports"/>).</summary>
    public static Tensor Dequantize(FourBitWeight weight, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var absmax = weight.AbsmaxFloat32().to(ScalarType.Float32).contiguous();   // one per block, fp32
        var output = empty([weight.OutFeatures, weight.InFeatures], dtype);
        var blocks = weight.ElementCount / FourBitCodec.BlockSize;
        var code = weight.Codec.Code.ToArray();
        unsafe
        {
            fixed (float* table = code)
            fixed (byte* packed = weight.Packed.bytes)
            fixed (byte* scales = absmax.bytes)
            fixed (byte* values = output.bytes)
            {
                // libtorch aligns CPU tensors to 64 bytes; the aligned stores below need it.
                if ((nint)values % Vector512<byte>.Count != 0) return weight.DequantizeWithTorch(dtype).MoveToOuterDisposeScope();
                if (dtype == ScalarType.BFloat16) BFloat16Blocks(table, packed, (float*)scales, (ushort*)values, blocks);
                else Float32Blocks(table, packed, (float*)scales, (float*)values, blocks);
            }
        }
        return output.MoveToOuterDisposeScope();
    }

    private static unsafe void BFloat16Blocks(float* table, byte* packed, float* absmax, ushort* output, long blocks)
    {
        var code = Avx512F.LoadVector512(table);
        for (var b = 0L; b < blocks; b++)
        {
            var scaled = Avx512F.Multiply(code, Vector512.Create(absmax[b]));              // code[i] · absmax, fp32
            var book = Vector512.Create(Models.BFloat16Bits.Round16(scaled), Vector256<ushort>.Zero);  // 16 bf16 values, then unused
            var (first, second) = Indices(packed + b * 32);
            var destination = output + b * 64;
            Avx512F.StoreAlignedNonTemporal(destination, Avx512BW.PermuteVar32x16(book, Avx512BW.ConvertToVector512UInt16(first)));
            Avx512F.StoreAlignedNonTemporal(destination + 32, Avx512BW.PermuteVar32x16(book, Avx512BW.ConvertToVector512UInt16(second)));
        }
        Sse.StoreFence();   // non-temporal stores are weakly ordered: visible to the product's threads before it starts
    }

    private static unsafe void Float32Blocks(float* table, byte* packed, float* absmax, float* output, long blocks)
    {
        var code = Avx512F.LoadVector512(table);
        for (var b = 0L; b < blocks; b++)
        {
            var book = Avx512F.Multiply(code, Vector512.Create(absmax[b]));
            var (first, second) = Indices(packed + b * 32);
            var destination = output + b * 64;
            Avx512F.StoreAlignedNonTemporal(destination, Avx512F.PermuteVar16x32(book, Avx512F.ConvertToVector512Int32(first.GetLower())));
            Avx512F.StoreAlignedNonTemporal(destination + 16, Avx512F.PermuteVar16x32(book, Avx512F.ConvertToVector512Int32(first.GetUpper())));
            Avx512F.StoreAlignedNonTemporal(destination + 32, Avx512F.PermuteVar16x32(book, Avx512F.ConvertToVector512Int32(second.GetLower())));
            Avx512F.StoreAlignedNonTemporal(destination + 48, Avx512F.PermuteVar16x32(book, Avx512F.ConvertToVector512Int32(second.GetUpper())));
        }
        Sse.StoreFence();
    }

    /// <summary>
    /// The 64 code indices of one block (32 bytes) in element order, one per byte: byte k holds element 2k in its high
    /// nibble and 2k+1 in its low one. Each byte is widened to a 16-bit lane holding (high | low &lt;&lt; 8), which read
    /// as bytes is exactly (high, low) in memory order.
    /// </summary>
    private static unsafe (Vector256<byte> First, Vector256<byte> Second) Indices(byte* bytes)
    {
        var widened = Avx512BW.ConvertToVector512UInt16(Avx.LoadVector256(bytes));                     // 32 × u16
        var pairs = Avx512BW.ShiftRightLogical(widened, 4) | Avx512BW.ShiftLeftLogical(widened & Vector512.Create((ushort)0xF), 8);
        var asBytes = pairs.AsByte();
        return (asBytes.GetLower(), asBytes.GetUpper());
    }
}
