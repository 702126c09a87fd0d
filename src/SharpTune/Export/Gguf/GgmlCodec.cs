namespace SharpTune.Export.Gguf;

/// <summary>Converts float32 rows to and from every <see cref="GgmlType"/> the export writes.</summary>
internal static class GgmlCodec
{
    /// <summary>Encodes <paramref name="values"/> (whole rows) as <paramref name="type"/> into <paramref name="output"/>.</summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> values, Span<byte> output)
    {
        var expected = values.Length / GgmlTypeInfo.BlockSize(type) * (long)GgmlTypeInfo.BytesPerBlock(type);
        if (values.Length % GgmlTypeInfo.BlockSize(type) != 0 || output.Length != expected)
            throw new ArgumentException($"{type}: {values.Length} values do not fill {output.Length} bytes of whole blocks");
        switch (type)
        {
            case GgmlType.F32:
                for (var i = 0; i < values.Length; i++) BitConverter.TryWriteBytes(output.Slice(4 * i, 4), values[i]);
                break;
            case GgmlType.F16:
                for (var i = 0; i < values.Length; i++) Fp16.Write(output, 2 * i, Fp16.FromFloat(values[i]));
                break;
            case GgmlType.BF16:
                for (var i = 0; i < values.Length; i++) Fp16.Write(output, 2 * i, Models.BFloat16Bits.Round(values[i]));
                break;
            case GgmlType.Q8_0: LegacyQuants.QuantizeQ8_0(values, output); break;
            case GgmlType.Q4_0: LegacyQuants.QuantizeQ4_0(values, output); break;
            case GgmlType.Q5_0: LegacyQuants.QuantizeQ5_0(values, output); break;
            case GgmlType.Q5_1: LegacyQuants.QuantizeQ5_1(values, output); break;
            case GgmlType.Q4_K: KQuants.QuantizeQ4_K(values, output); break;
            case GgmlType.Q5_K: KQuants.QuantizeQ5_K(values, output); break;
            case GgmlType.Q6_K: KQuants.QuantizeQ6_K(values, output); break;
            default: throw new NotSupportedException($"ggml type {type} cannot be written");
        }
    }

    /// <summary>Decodes <paramref name="data"/> of <paramref name="type"/> into <paramref name="output"/> (ggml's to_float).</summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> data, Span<float> output)
    {
        switch (type)
        {
            case GgmlType.F32:
                for (var i = 0; i < output.Length; i++) output[i] = BitConverter.ToSingle(data.Slice(4 * i, 4));
                break;
            case GgmlType.F16:
                for (var i = 0; i < output.Length; i++) output[i] = Fp16.ToFloat(Fp16.Read(data, 2 * i));
                break;
            case GgmlType.BF16:
                for (var i = 0; i < output.Length; i++) output[i] = Models.BFloat16Bits.ToSingle(Fp16.Read(data, 2 * i));
                break;
            case GgmlType.Q8_0: LegacyQuants.DequantizeQ8_0(data, output); break;
            case GgmlType.Q4_0: LegacyQuants.DequantizeQ4_0(data, output); break;
            case GgmlType.Q5_0: LegacyQuants.DequantizeQ5_0(data, output); break;
            case GgmlType.Q5_1: LegacyQuants.DequantizeQ5_1(data, output); break;
            case GgmlType.Q4_K: KQuants.DequantizeQ4_K(data, output); break;
            case GgmlType.Q5_K: KQuants.DequantizeQ5_K(data, output); break;
            case GgmlType.Q6_K: KQuants.DequantizeQ6_K(data, output); break;
            case GgmlType.MXFP4: Mxfp4Blocks.Dequantize(data, output); break;
            default: throw new NotSupportedException($"ggml type {type} cannot be read");
        }
    }
}
