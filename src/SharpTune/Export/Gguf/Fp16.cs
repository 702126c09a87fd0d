namespace SharpTune.Export.Gguf;

/// <summary>IEEE half and bfloat16 conversions with ggml's rounding (round to nearest, ties to even).</summary>
internal static class Fp16
{
    public static ushort FromFloat(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    public static float ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static ushort Read(ReadOnlySpan<byte> bytes, int offset) => (ushort)(bytes[offset] | bytes[offset + 1] << 8);

    public static void Write(Span<byte> bytes, int offset, ushort bits)
    {
        bytes[offset] = (byte)bits;
        bytes[offset + 1] = (byte)(bits >> 8);
    }

    /// <summary>ggml_compute_fp32_to_bf16: NaN stays a quiet NaN, everything else rounds to nearest even.</summary>
    public static ushort BFloat16FromFloat(float value)
    {
        var u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7fffffff) > 0x7f800000) return (ushort)((u >> 16) | 64);
        return (ushort)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
    }

    public static float BFloat16ToFloat(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
}
