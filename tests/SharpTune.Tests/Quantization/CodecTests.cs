using SharpTune.Quantization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Quantization;

/// <summary>
/// Quantize/dequantize round trips worked by hand from bitsandbytes' published code tables (functional.py's
/// get_4bit_type and create_dynamic_map) and its default backend's rules: scaled = w / absmax per block of 64,
/// nearest code by midpoints (ties go to the lower code), two codes per byte with the first element in the high nibble.
/// </summary>
public class CodecTests
{
    private static Tensor Weight(int rows, params (int Row, int Col, float Value)[] entries)
    {
        var values = new float[rows * 64];
        foreach (var (row, col, value) in entries) values[row * 64 + col] = value;
        return tensor(values).view(rows, 64);
    }

    private static byte[] Bytes(Tensor t) => t.data<byte>().ToArray();

    [Fact]
    public void Nf4PacksNearestCodesHighNibbleFirstAndDequantizesToCodeTimesAbsmax()
    {
        // Block 0: absmax 2 → scaled 1, 0.5, −0.7, 0, 0.085. Nearest NF4 codes: 1.0 (15); 0.5 lies below the midpoint
        // (0.4407+0.5626)/2 = 0.5017 → 0.4407 (12); −0.7 → −0.6962 (1); 0 → 0 (7); 0.085 → 0.0796 (8).
        // Block 1: absmax 3 → scaled −1 (0) and 0.1, below (0.0796+0.1609)/2 = 0.1203 → 0.0796 (8).
        using var w = Weight(2, (0, 0, 2f), (0, 1, 1f), (0, 2, -1.4f), (0, 3, 0f), (0, 4, 0.17f), (1, 0, -3f), (1, 1, 0.3f));
        var q = Nf4Codec.Instance.Quantize(w, doubleQuant: false);
        var packed = Bytes(q.Packed);
        Assert.Equal(64, packed.Length);
        Assert.Equal(new byte[] { 0xFC, 0x17, 0x87 }, packed[..3]);     // (15,12) (1,7) (8,7)
        Assert.All(packed[3..32], b => Assert.Equal(0x77, b));         // zeros are code 7
        Assert.Equal(0x08, packed[32]);                                 // (0,8)
        Assert.Equal(new[] { 2f, 3f }, q.Absmax!.data<float>().ToArray());

        var d = q.Dequantize(ScalarType.Float32).data<float>().ToArray();
        Assert.Equal(2f, d[0]);
        Assert.Equal(0.44070982933044434f * 2f, d[1]);
        Assert.Equal(-0.6961928009986877f * 2f, d[2]);
        Assert.Equal(0f, d[3]);
        Assert.Equal(0.07958029955625534f * 2f, d[4]);
        Assert.Equal(-3f, d[64]);
        Assert.Equal(0.07958029955625534f * 3f, d[65]);
    }

    [Fact]
    public void Fp4UsesBitsandbytesBitPatternsDividedByTwelve()
    {
        // absmax 12 → scaled 1 (pattern 3), 0.5 (5), −0.25 (15), 0 (0), 0.2 → 2/12 (6) since 0.2 < (2/12+3/12)/2,
        // −0.75 → −8/12 (10) since −0.75 > (−1−8/12)/2.
        using var w = Weight(1, (0, 0, 12f), (0, 1, 6f), (0, 2, -3f), (0, 3, 0f), (0, 4, 2.4f), (0, 5, -9f));
        var q = Fp4Codec.Instance.Quantize(w, doubleQuant: false);
        Assert.Equal(new byte[] { 0x35, 0xF0, 0x6A }, Bytes(q.Packed)[..3]);
        var d = q.Dequantize(ScalarType.Float32).data<float>().ToArray();
        Assert.Equal(new[] { 12f, 6f, -3f, 0f, 2f, -8f }, d[..6]);
    }

    [Fact]
    public void DynamicMapMatchesCreateDynamicMap()
    {
        var map = DoubleQuantizedAbsmax.DynamicMap;
        Assert.Equal(256, map.Count);
        Assert.Equal(map.Order(), map);
        Assert.Equal(1f, map[255]);
        Assert.Equal(0f, map[127]);
        // Largest fraction below 1: the mean of the last two of linspace(0.1, 1, 65) = (0.9859375 + 1) / 2.
        Assert.Equal(0.99296875f, map[254], 6);
        Assert.Equal(-0.99296875f, map[0], 6);
        // Smallest magnitude: decade 1e-6 times the single mean of linspace(0.1, 1, 2) = 0.55.
        Assert.Equal(0.55e-6f, map[128], 12);
        Assert.Equal(-0.55e-6f, map[126], 12);
    }

    [Fact]
    public void DoubleQuantizationStoresAbsmaxMinusMeanIn8BitsAndRestoresIt()
    {
        // Four blocks with absmax 1, 2, 3, 6: offset = mean = 3; centred −2, −1, 0, 3; one partial block of 256 with
        // absmax 3 → −2/3, −1/3, 0, 1. In the dynamic map (top decade: means of linspace(0.1, 1, 65), step 0.0140625):
        // −2/3 → −0.66953125 (index 23), −1/3 → −0.33203125 (index 47), 0 → index 127, 1 → index 255.
        using var w = Weight(4, (0, 0, 1f), (1, 0, 2f), (2, 0, 3f), (3, 0, 6f), (3, 1, -1.5f));
        var q = Nf4Codec.Instance.Quantize(w, doubleQuant: true);
        var dq = q.DoubleQuantized!;
        Assert.Null(q.Absmax);
        Assert.Equal(3f, dq.Offset.item<float>());
        Assert.Equal(new[] { 3f }, dq.Absmax.data<float>().ToArray());
        Assert.Equal(new byte[] { 23, 47, 127, 255 }, Bytes(dq.Codes));
        var absmax = dq.Dequantize().data<float>().ToArray();
        Assert.Equal(-0.66953125 * 3 + 3, absmax[0], 5);
        Assert.Equal(-0.33203125 * 3 + 3, absmax[1], 5);
        Assert.Equal(3.0, absmax[2], 6);
        Assert.Equal(6.0, absmax[3], 6);
        // The weights come back as code × restored absmax: row 3 holds 6 (code 1.0) and −1.5 → −0.25 → −0.2844 (code 4).
        var d = q.Dequantize(ScalarType.Float32).data<float>().ToArray();
        Assert.Equal(absmax[0], d[0]);
        Assert.Equal(absmax[1], d[64]);
        Assert.Equal(6f, d[192], 5);
        Assert.Equal(-0.28444138169288635 * 6, d[193], 5);
        Assert.Equal(0xF4, Bytes(q.Packed)[96]);   // elements 192, 193: codes (15, 4); −0.25 < (−0.2844−0.1848)/2
    }

    [Fact]
    public void Int8RoundsRowsHalfToEvenAgainstTheirAbsmax()
    {
        // Row 0: absmax 1 → 0.5·127 = 63.5 → 64 (even), −127, 31.75 → 32, 0.4953 → 0.
        // Row 1: absmax 2 → 127, 63.5 → 64, −0.635 → −1, 0.
        using var w = tensor(new float[,] { { 0.5f, -1f, 0.25f, 0.0039f }, { 2f, 1f, -0.01f, 0f } });
        var q = Int8RowwiseCodec.Quantize(w);
        Assert.Equal(new sbyte[] { 64, -127, 32, 0, 127, 64, -1, 0 }, q.Codes.data<sbyte>().ToArray());
        Assert.Equal(new[] { 1f, 2f }, q.RowAbsmax.data<float>().ToArray());
        var d = q.Dequantize(ScalarType.Float32).data<float>().ToArray();
        Assert.Equal(64 / 127.0, d[0], 6);
        Assert.Equal(-1.0, d[1], 6);
        Assert.Equal(-2 / 127.0, d[6], 6);
    }

    [Theory]
    [InlineData(QuantizationType.Nf4, true, 0.12)]
    [InlineData(QuantizationType.Nf4, false, 0.12)]
    [InlineData(QuantizationType.Fp4, true, 0.2)]
    [InlineData(QuantizationType.Int8, false, 0.01)]
    public void GaussianWeightsComeBackWithinTheFormatsResolution(QuantizationType type, bool doubleQuant, double maxRelativeError)
    {
        torch.manual_seed(3);
        using var w = randn(48, 320);
        var options = new QuantizationOptions(type, ScalarType.Float32, doubleQuant);
        using var layer = QuantizedLinear.Quantize(w, null, options);
        using var back = layer.DequantizedWeight(ScalarType.Float32);
        var relative = ((back - w).norm() / w.norm()).item<float>();
        Assert.InRange(relative, 0.001, maxRelativeError);
        var expectedBytes = QuantizationReport.BytesFor(w.numel(), 48, options);
        Assert.Equal(expectedBytes, layer.Weight.StorageBytes);
    }

    [Theory]
    [InlineData("nf5")]
    [InlineData("int4")]
    [InlineData("")]
    public void UnknownQuantizationNamesAreClearErrors(string value)
    {
        var e = Assert.Throws<ArgumentException>(() => QuantizationOptions.Parse(value));
        Assert.Contains("nf4, fp4, int8", e.Message);
        Assert.Contains("--compute-dtype", Assert.Throws<ArgumentException>(() => QuantizationOptions.Parse("nf4", "int8")).Message);
        Assert.Contains("--double-quant", Assert.Throws<ArgumentException>(() => QuantizationOptions.Parse("nf4", "bf16", "maybe")).Message);
    }

    [Theory]
    [InlineData(QuantizationType.Nf4, true, 7, 96)]     // 672 weights: chunks of 128 leave a 32-weight partial last block
    [InlineData(QuantizationType.Nf4, false, 5, 77)]    // 385 weights: odd count, last code padded
    [InlineData(QuantizationType.Fp4, true, 9, 64)]
    public void ChunkedFourBitQuantizationEqualsWholeTensorQuantization(QuantizationType type, bool doubleQuant, int rows, int cols)
    {
        manual_seed(21);
        using var w = randn(rows, cols) * 0.3;
        var codec = FourBitCodec.For(type);
        var wholeChunk = (w.numel() + 63) / 64 * 64;
        using var whole = codec.Quantize(w, doubleQuant, wholeChunk);
        using var chunked = codec.Quantize(w, doubleQuant, 128);
        using var single = codec.Quantize(w, doubleQuant, 64);
        foreach (var other in new[] { chunked, single })
        {
            Assert.Equal(Bytes(whole.Packed), Bytes(other.Packed));
            foreach (var (name, t) in whole.StoredTensors)
                Assert.True(t.equal(other.StoredTensors[name]).all().item<bool>(), $"{name} differs when quantized in chunks");
        }
        // The chunked form is also what bitsandbytes' rule gives: dequantized values within half a code step of w.
        using var back = whole.Dequantize(ScalarType.Float32);
        Assert.True((back - w).abs().max().item<float>() < w.abs().max().item<float>() * 0.2f);
    }

    [Fact]
    public void ChunkedInt8QuantizationEqualsWholeTensorQuantization()
    {
        manual_seed(22);
        using var w = randn(11, 40) * 0.5;
        using var whole = Int8RowwiseCodec.Quantize(w, 11 * 40);
        using var chunked = Int8RowwiseCodec.Quantize(w, 90);   // two rows per chunk, a single row last
        using var rowByRow = Int8RowwiseCodec.Quantize(w, 1);
        foreach (var other in new[] { chunked, rowByRow })
        {
            Assert.True(whole.Codes.equal(other.Codes).all().item<bool>());
            Assert.True(whole.RowAbsmax.equal(other.RowAbsmax).all().item<bool>());
        }
    }
}
