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
}
