namespace SharpTune.Export.Gguf;

/// <summary>
/// ggml's 32-value block formats: Q8_0 (fp16 scale + 32 int8), Q4_0 (fp16 scale + 32 nibbles, offset 8), Q5_0
/// (fp16 scale + 32 five-bit values, offset 16) and Q5_1 (fp16 scale and minimum + 32 five-bit values), quantized
/// exactly as quantize_row_q*_ref in ggml-quants.c.
/// </summary>
internal static class LegacyQuants
{
    private const int Block = 32;

    public static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        for (int b = 0, o = 0; b < x.Length; b += Block, o += 34)
        {
            var block = x.Slice(b, Block);
            float amax = 0;
            foreach (var v in block) amax = Math.Max(amax, MathF.Abs(v));
            var d = amax / ((1 << 7) - 1);
            var id = d != 0 ? 1.0f / d : 0.0f;
            Fp16.Write(y, o, Fp16.FromFloat(d));
            for (var j = 0; j < Block; j++)
                y[o + 2 + j] = (byte)(sbyte)MathF.Round(block[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    public static void DequantizeQ8_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        for (int b = 0, o = 0; b < y.Length; b += Block, o += 34)
        {
            var d = Fp16.ToFloat(Fp16.Read(x, o));
            for (var j = 0; j < Block; j++) y[b + j] = (sbyte)x[o + 2 + j] * d;
        }
    }

    /// <summary>The value of largest magnitude, with its sign (ggml's symmetric formats scale by it).</summary>
    private static float SignedAbsMax(ReadOnlySpan<float> block)
    {
        float amax = 0, max = 0;
        foreach (var v in block)
        {
            if (amax < MathF.Abs(v))
            {
                amax = MathF.Abs(v);
                max = v;
            }
        }
        return max;
    }

    public static void QuantizeQ4_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        for (int b = 0, o = 0; b < x.Length; b += Block, o += 18)
        {
            var block = x.Slice(b, Block);
            var d = SignedAbsMax(block) / -8;
            var id = d != 0 ? 1.0f / d : 0.0f;
            Fp16.Write(y, o, Fp16.FromFloat(d));
            for (var j = 0; j < Block / 2; j++)
            {
                var x0 = block[j] * id;
                var x1 = block[Block / 2 + j] * id;
                var xi0 = (byte)Math.Min(15, (int)(sbyte)(x0 + 8.5f));
                var xi1 = (byte)Math.Min(15, (int)(sbyte)(x1 + 8.5f));
                y[o + 2 + j] = (byte)(xi0 | (xi1 << 4));
            }
        }
    }

    public static void DequantizeQ4_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        for (int b = 0, o = 0; b < y.Length; b += Block, o += 18)
        {
            var d = Fp16.ToFloat(Fp16.Read(x, o));
            for (var j = 0; j < Block / 2; j++)
            {
                y[b + j] = ((x[o + 2 + j] & 0x0F) - 8) * d;
                y[b + j + Block / 2] = ((x[o + 2 + j] >> 4) - 8) * d;
            }
        }
    }

    public static void QuantizeQ5_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        for (int b = 0, o = 0; b < x.Length; b += Block, o += 22)
        {
            var block = x.Slice(b, Block);
            var d = SignedAbsMax(block) / -16;
            var id = d != 0 ? 1.0f / d : 0.0f;
            Fp16.Write(y, o, Fp16.FromFloat(d));
            uint qh = 0;
            for (var j = 0; j < Block / 2; j++)
            {
                var x0 = block[j] * id;
                var x1 = block[Block / 2 + j] * id;
                var xi0 = (byte)Math.Min(31, (int)(sbyte)(x0 + 16.5f));
                var xi1 = (byte)Math.Min(31, (int)(sbyte)(x1 + 16.5f));
                y[o + 6 + j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                qh |= (uint)((xi0 & 0x10) >> 4) << j;
                qh |= (uint)((xi1 & 0x10) >> 4) << (j + Block / 2);
            }
            BitConverter.TryWriteBytes(y.Slice(o + 2, 4), qh);
        }
    }

    public static void DequantizeQ5_0(ReadOnlySpan<byte> x, Span<float> y)
    {
        for (int b = 0, o = 0; b < y.Length; b += Block, o += 22)
        {
            var d = Fp16.ToFloat(Fp16.Read(x, o));
            var qh = BitConverter.ToUInt32(x.Slice(o + 2, 4));
            for (var j = 0; j < Block / 2; j++)
            {
                var xh0 = (int)((qh >> j) << 4) & 0x10;
                var xh1 = (int)(qh >> (j + 12)) & 0x10;
                y[b + j] = (((x[o + 6 + j] & 0x0F) | xh0) - 16) * d;
                y[b + j + Block / 2] = (((x[o + 6 + j] >> 4) | xh1) - 16) * d;
            }
        }
    }

    /// <summary>Q5_1 (llama-quantize's fallback for Q5_K rows 256 does not divide): d = (max − min) / 31, offset min.</summary>
    public static void QuantizeQ5_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        for (int b = 0, o = 0; b < x.Length; b += Block, o += 24)
        {
            var block = x.Slice(b, Block);
            float min = float.MaxValue, max = -float.MaxValue;
            foreach (var v in block)
            {
                if (v < min) min = v;
                if (v > max) max = v;
            }
            var d = (max - min) / ((1 << 5) - 1);
            var id = d != 0 ? 1.0f / d : 0.0f;
            Fp16.Write(y, o, Fp16.FromFloat(d));
            Fp16.Write(y, o + 2, Fp16.FromFloat(min));
            uint qh = 0;
            for (var j = 0; j < Block / 2; j++)
            {
                var x0 = (block[j] - min) * id;
                var x1 = (block[Block / 2 + j] - min) * id;
                var xi0 = (byte)(x0 + 0.5f);
                var xi1 = (byte)(x1 + 0.5f);
                y[o + 8 + j] = (byte)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
                qh |= (uint)((xi0 & 0x10) >> 4) << j;
                qh |= (uint)((xi1 & 0x10) >> 4) << (j + Block / 2);
            }
            BitConverter.TryWriteBytes(y.Slice(o + 4, 4), qh);
        }
    }

    public static void DequantizeQ5_1(ReadOnlySpan<byte> x, Span<float> y)
    {
        for (int b = 0, o = 0; b < y.Length; b += Block, o += 24)
        {
            var d = Fp16.ToFloat(Fp16.Read(x, o));
            var m = Fp16.ToFloat(Fp16.Read(x, o + 2));
            var qh = BitConverter.ToUInt32(x.Slice(o + 4, 4));
            for (var j = 0; j < Block / 2; j++)
            {
                var xh0 = (int)((qh >> j) << 4) & 0x10;
                var xh1 = (int)(qh >> (j + 12)) & 0x10;
                y[b + j] = ((x[o + 8 + j] & 0x0F) | xh0) * d + m;
                y[b + j + Block / 2] = ((x[o + 8 + j] >> 4) | xh1) * d + m;
            }
        }
    }
}
