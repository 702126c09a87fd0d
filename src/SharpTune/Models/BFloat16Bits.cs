using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace SharpTune.Models;

/// <summary>
/// bf16 ↔ fp32 on raw bits, as libtorch and ggml (ggml_compute_fp32_to_bf16) convert: widening is exact, narrowing
/// rounds to nearest, ties to even, and a NaN stays a quiet NaN. The decode kernels and the GGUF writer both use it.
/// </summary>
internal static class BFloat16Bits
{
    public static float ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    public static ushort Round(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);   // a quiet NaN stays a NaN
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    /// <summary>count bf16 values → fp32, exactly (16 at a time where AVX-512 is there).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Widen(ushort* source, float* target, long count)
    {
        long i = 0;
        if (Avx512F.IsSupported)
            for (; i + 16 <= count; i += 16)
                Avx512F.Store(target + i, Widen16(source + i));
        for (; i < count; i++) target[i] = ToSingle(source[i]);
    }

    /// <summary>
    /// <paramref name="count"/> values from element <paramref name="element"/> of a bf16 (<paramref name="brain"/>) or
    /// fp32 buffer into fp32: widened, or copied.
    /// </summary>
    public static unsafe void Widen(nint source, long element, float* target, long count, bool brain)
    {
        if (brain) Widen((ushort*)source + element, target, count);
        else Buffer.MemoryCopy((float*)source + element, target, count * 4, count * 4);
    }

    /// <summary>16 bf16 values → 16 fp32 in one AVX-512 register, exactly.</summary>
    public static unsafe Vector512<float> Widen16(ushort* source) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Avx.LoadVector256(source)), 16).AsSingle();

    /// <summary>16 fp32 values → 16 bf16 (nearest, ties to even; a NaN stays a quiet NaN), as <see cref="Round"/> does each.</summary>
    public static Vector256<ushort> Round16(Vector512<float> values)
    {
        var bits = values.AsUInt32();
        var lsb = Avx512F.ShiftRightLogical(bits, 16) & Vector512<uint>.One;
        var rounded = Avx512F.ShiftRightLogical(bits + Vector512.Create(0x7FFFu) + lsb, 16);
        var quiet = Avx512F.ShiftRightLogical(bits, 16) | Vector512.Create(0x40u);
        var nan = Vector512.Equals(values, values).AsUInt32();   // all ones where the value is a number
        return Avx512F.ConvertToVector256UInt16(Vector512.ConditionalSelect(nan, rounded, quiet));
    }

    /// <summary>16 fp32 values rounded to bf16 (<see cref="Round16(Vector512{float})"/>) and stored at <paramref name="target"/>.</summary>
    public static unsafe void Round16(Vector512<float> values, ushort* target) => Avx.Store(target, Round16(values));

    /// <summary>16 fp32 values rounded to bf16 and widened back: a tensor form's cast to bf16 between two operations.</summary>
    public static Vector512<float> Rounded16(Vector512<float> values) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Round16(values)), 16).AsSingle();
}
