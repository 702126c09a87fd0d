using System.Runtime.Intrinsics.X86;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Quantization;

/// <summary>The SIMD NF4/FP4 dequantization against the TorchSharp one, bit for bit.</summary>
public class FourBitDequantizerTests
{
    [Theory]
    [InlineData(QuantizationType.Nf4, true, ScalarType.BFloat16, 24, 128)]
    [InlineData(QuantizationType.Nf4, false, ScalarType.BFloat16, 24, 128)]
    [InlineData(QuantizationType.Fp4, true, ScalarType.BFloat16, 24, 128)]    // FP4 has +0 and −0: the sign must survive
    [InlineData(QuantizationType.Nf4, true, ScalarType.Float32, 24, 128)]
    [InlineData(QuantizationType.Fp4, false, ScalarType.Float32, 24, 128)]
    [InlineData(QuantizationType.Nf4, true, ScalarType.BFloat16, 320, 832)]   // 4,160 blocks: split between threads
    [InlineData(QuantizationType.Nf4, true, ScalarType.Float32, 3, 960)]      // blocks that do not start rows (960 = 15 · 64)
    public void EqualsTheTorchSharpDequantizationBitForBit(QuantizationType type, bool doubleQuant, ScalarType dtype, int rows, int columns)
    {
        if (!Avx512BW.IsSupported) return;   // the kernel needs AVX-512BW; other CPUs dequantize with TorchSharp
        manual_seed(11);
        // Blocks of very different scales, values on both sides of zero, and exact zeros.
        using var w = randn(rows, columns) * exp(randn(rows, 1) * 2) * (rand(rows, columns) > 0.05);
        using var weight = FourBitCodec.For(type).Quantize(w, doubleQuant);
        Assert.True(FourBitDequantizer.Supports(weight, dtype));
        using var expected = weight.DequantizeWithTorch(dtype);
        using var actual = FourBitDequantizer.Dequantize(weight, dtype);
        Assert.Equal(dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        // Compare raw bits: equal as values would accept −0 for +0.
        var same = expected.bytes.SequenceEqual(actual.bytes);
        if (!same)
        {
            using var diff = (expected.to(ScalarType.Float32) - actual.to(ScalarType.Float32)).abs();
            Assert.Fail($"bits differ; largest value difference {diff.max().item<float>()}");
        }
        using var values = actual.to(ScalarType.Float32);
        Assert.True(values.abs().max().item<float>() > 0);
    }

    [Fact]
    public void WeightsThatDoNotFillWholeBlocksAndOtherDtypesUseTorchSharp()
    {
        manual_seed(12);
        using var ragged = FourBitCodec.For(QuantizationType.Nf4).Quantize(randn(3, 50), doubleQuant: true);   // 150 weights
        Assert.False(FourBitDequantizer.Supports(ragged, ScalarType.BFloat16));
        using var whole = FourBitCodec.For(QuantizationType.Nf4).Quantize(randn(2, 64), doubleQuant: true);
        Assert.False(FourBitDequantizer.Supports(whole, ScalarType.Float16));
        using var viaDispatch = ragged.Dequantize(ScalarType.BFloat16);
        using var viaTorch = ragged.DequantizeWithTorch(ScalarType.BFloat16);
        Assert.True(viaDispatch.bytes.SequenceEqual(viaTorch.bytes));
    }
}
