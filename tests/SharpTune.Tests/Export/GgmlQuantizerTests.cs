using SharpTune.Export.Gguf;

namespace SharpTune.Tests.Export;

/// <summary>
/// SharpTune's block quantizers against ggml's own (libggml-base.so from llama.cpp's npm build): the same bytes from
/// quantize_row_*_ref, and the same floats from dequantize_row_*.
/// </summary>
public class GgmlQuantizerTests
{
    public static TheoryData<GgmlType> Types => new()
    {
        GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    };

    /// <summary>Weight-like values: Gaussian rows with outliers, a zero block, a constant block, tiny and huge scales.</summary>
    private static float[] TestValues(int count, int seed)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (var i = 0; i < count; i++)
        {
            var gaussian = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
            values[i] = (float)(gaussian * 0.02 * (i / 256 % 3 + 1));
            if (random.Next(50) == 0) values[i] *= 12;
        }
        Array.Clear(values, 256, 256);                       // an all-zero super-block
        Array.Fill(values, 0.5f, 512, 256);                  // a constant one
        for (var i = 768; i < 1024; i++) values[i] = -Math.Abs(values[i]); // all negative
        for (var i = 1024; i < 1280; i++) values[i] *= 1e-6f; // tiny scale
        for (var i = 1280; i < 1536; i++) values[i] *= 400f;  // large scale
        return values;
    }

    [LlamaCppTheory]
    [MemberData(nameof(Types))]
    public void QuantizedBytesEqualGgmlsReferenceQuantizer(GgmlType type)
    {
        var values = TestValues(256 * 64, seed: (int)type);
        var ours = new byte[values.Length / GgmlTypeInfo.BlockSize(type) * GgmlTypeInfo.BytesPerBlock(type)];
        GgmlCodec.Quantize(type, values, ours);
        var ggml = GgmlNative.Quantize(type, values);
        var firstDifference = Enumerable.Range(0, ours.Length).FirstOrDefault(i => ours[i] != ggml[i], -1);
        Assert.True(firstDifference < 0, $"{type}: byte {firstDifference} (block {firstDifference / Math.Max(1, GgmlTypeInfo.BytesPerBlock(type))}) differs from ggml's");
    }

    [LlamaCppTheory]
    [MemberData(nameof(Types))]
    public void DequantizedValuesEqualGgmlsDequantizer(GgmlType type)
    {
        var values = TestValues(256 * 16, seed: 100 + (int)type);
        var blocks = GgmlNative.Quantize(type, values);
        var ours = new float[values.Length];
        GgmlCodec.Dequantize(type, blocks, ours);
        var ggml = GgmlNative.Dequantize(type, blocks, values.Length);
        Assert.Equal(ggml, ours);
        // And the round trip is a quantization, not a copy: bounded but non-zero error.
        var maxError = values.Zip(ours, (a, b) => Math.Abs(a - b)).Max();
        Assert.InRange(maxError, 1e-9, 0.2 * values.Max(Math.Abs));
    }
}
