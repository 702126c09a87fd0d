namespace SharpTune.Export.Gguf;

/// <summary>IEEE half conversions with ggml's rounding (round to nearest, ties to even); bfloat16 is <see cref="Models.BFloat16Bits"/>.</summary>
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
}
