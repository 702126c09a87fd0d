using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Quantization;
using SharpTune.Tests.Support;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Tests.Quantization;

/// <summary>The int8 and 4-bit matrix–vector kernels against TorchSharp's dequantize-then-multiply, and in a decode.</summary>
public class QuantizedMatVecTests
{
    [Theory]
    [InlineData(1, 64, 40)]      // one AVX-512 block
    [InlineData(3, 200, 300)]    // a 16-wide step and a scalar tail; several rows; two threads' worth of outputs
    [InlineData(1, 768, 2048)]   // the M shape's gate/up
    [InlineData(8, 5, 7)]        // shorter than any vector
    [InlineData(7, 4200, 90)]    // blocks of four rows and three alone; sums flushed from integers twice (every 4,096 codes) and a tail
    public void EqualsDequantizeThenMatmulInFloat32(int rows, int inFeatures, int outFeatures)
    {
        manual_seed(3);
        using var w = randn(outFeatures, inFeatures) * 0.05;
        using var weight = Int8RowwiseCodec.Quantize(w);
        using var x = randn(rows, inFeatures);
        using var inference = inference_mode();
        Assert.True(Int8MatVec.Supports(x, weight));
        using var deq = weight.Dequantize(ScalarType.Float32);
        using var expected = F.linear(x, deq);
        using var actual = Int8MatVec.Multiply(x, weight);
        Assert.Equal(expected.shape, actual.shape);
        // The kernel rounds each input row to int16 on max|x| / 32767: each input moves by at most half that step, so an
        // output moves by at most Σ|w|·max|x| / 65534 (plus fp32 rounding of the sums).
        using var bound = F.linear(x.abs().amax([-1L], keepdim: true).expand_as(x) / 65534, deq.abs()) + expected.abs() * 1e-5 + 1e-6;
        using var error = (actual - expected).abs();
        Assert.True(error.le(bound).all().item<bool>(), $"differs by up to {error.max().item<float>()} (bound {bound.min().item<float>()}..)");
        // …and the rounding is really that fine: far closer than a bf16 rounding of the inputs would be.
        using var viaBfloat16 = F.linear(x.to(ScalarType.BFloat16).to(ScalarType.Float32), deq);
        Assert.True(error.max().item<float>() < (viaBfloat16 - expected).abs().max().item<float>() || inFeatures < 16);
    }

    [Fact]
    public void Bfloat16InputsGiveTheFloat32ProductRoundedOnce()
    {
        manual_seed(4);
        using var w = randn(96, 128) * 0.05;
        using var weight = Int8RowwiseCodec.Quantize(w);
        using var x = randn(2, 1, 128).to(ScalarType.BFloat16);
        using var inference = inference_mode();
        using var actual = Int8MatVec.Multiply(x, weight);
        Assert.Equal(ScalarType.BFloat16, actual.dtype);
        Assert.Equal(new long[] { 2, 1, 96 }, actual.shape);
        using var expected = F.linear(x.to(ScalarType.Float32), weight.Dequantize(ScalarType.Float32)).to(ScalarType.BFloat16);
        // Both sides round an fp32 result to bf16 once; the kernel's int16 inputs move it by far less than one bf16 step.
        Assert.True(actual.to(ScalarType.Float32).allclose(expected.to(ScalarType.Float32), rtol: 1e-2, atol: 1e-3));
    }

    [Fact]
    public void ANonContiguousBfloat16InputIsReadAsBfloat16()
    {
        manual_seed(5);
        using var w = randn(96, 128) * 0.05;
        using var weight = Int8RowwiseCodec.Quantize(w);
        using var wide = randn(128, 3).to(ScalarType.BFloat16);
        using var x = wide.t().narrow(0, 1, 1);                      // (1, 128), a strided view
        Assert.False(x.is_contiguous());
        using var inference = inference_mode();
        using var actual = Int8MatVec.Multiply(x, weight);
        using var expected = Int8MatVec.Multiply(x.contiguous(), weight);
        Assert.True(actual.equal(expected).all().item<bool>());
    }

    [Fact]
    public void BatchesAboveTheDecodeSizeAndAutogradInputsStayOnTorch()
    {
        using var weight = Int8RowwiseCodec.Quantize(randn(16, 32));
        Assert.False(Int8MatVec.Supports(randn(1, 32), weight));                     // outside a decode step's inference mode
        using var inference = inference_mode();
        Assert.True(Int8MatVec.Supports(randn(1, 32), weight));
        Assert.False(Int8MatVec.Supports(randn(Int8MatVec.MaxRows + 1, 32), weight));
        Assert.False(Int8MatVec.Supports(randn(1, 32, dtype: ScalarType.Float64), weight));
        using (InferenceShortcuts.Disable()) Assert.False(Int8MatVec.Supports(randn(1, 32), weight));
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen3")]
    public void Int8ModelDecodesTheSameTokensWithTheKernelAsWithTorch(string kind) => AssertKernelDecodesAsTorch(kind, QuantizationType.Int8);

    [Theory]
    [InlineData(QuantizationType.Int8)]
    [InlineData(QuantizationType.Nf4)]
    public void AQuantizedOutputHeadDecodesTheSameTokensWithTheKernelAsWithTorch(QuantizationType type) =>
        AssertKernelDecodesAsTorch("llama", type, lmHead: true);

    /// <summary>Greedy tokens of a quantized model with the decode kernels and with them switched off (dequantize + matmul).</summary>
    private static void AssertKernelDecodesAsTorch(string kind, QuantizationType type, bool lmHead = false)
    {
        using var model = TestModels.Create(kind);
        ModelQuantizer.Quantize(model, new QuantizationOptions(type, ScalarType.Float32, LmHead: lmHead));
        Assert.Equal(lmHead, ModelQuantizer.QuantizedLayers(model).Any(l => l.Path == "lm_head"));
        model.eval();
        var options = new GenerationOptions { Temperature = 0, EosTokenIds = [], MaxNewTokens = 16 };
        IReadOnlyList<int>[] prompts = [[4, 8, 15, 16], [23, 42]];
        var kernel = TokenGenerator.Generate(model, prompts, options);
        IReadOnlyList<GenerationResult> torchPath;
        using (InferenceShortcuts.Disable()) torchPath = TokenGenerator.Generate(model, prompts, options);
        for (var i = 0; i < prompts.Length; i++) Assert.Equal(torchPath[i].Tokens, kernel[i].Tokens);
    }

    [Theory]
    [InlineData(QuantizationType.Nf4, true, 1, 128, 40)]
    [InlineData(QuantizationType.Nf4, false, 3, 768, 300)]
    [InlineData(QuantizationType.Fp4, true, 2, 64, 17)]
    [InlineData(QuantizationType.Nf4, true, 6, 192, 70)]   // a block of four rows and two alone
    public void FourBitKernelEqualsDequantizeThenMatmulInFloat32(QuantizationType type, bool doubleQuant, int rows, int inFeatures, int outFeatures)
    {
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) return;   // the kernel needs AVX-512; torch serves other CPUs
        manual_seed(6);
        using var w = randn(outFeatures, inFeatures) * 0.05;
        using var weight = FourBitCodec.For(type).Quantize(w, doubleQuant);
        using var x = randn(rows, inFeatures);
        using var deq = weight.Dequantize(ScalarType.Float32);
        using var expected = F.linear(x, deq);
        Assert.False(FourBitMatVec.Supports(x, weight));                      // outside a decode step's inference mode
        using var inference = inference_mode();
        Assert.True(FourBitMatVec.Supports(x, weight));
        using var actual = FourBitMatVec.Multiply(x, weight);
        // Inputs rounded to int16 on max|x| / 32767 and code values on max|code| / 16383: each moves by at most half a
        // step, so an output by at most Σ|w|·max|x| / 65534 + Σ|x|·max|w| / 32766 per row (plus fp32 sums).
        using var maxX = x.abs().amax([-1L], keepdim: true);
        using var bound = F.linear(maxX.expand_as(x) / 65534, deq.abs()) + F.linear(x.abs(), deq.abs().amax([-1L], keepdim: true).expand_as(deq) / 32766)
            + expected.abs() * 1e-5 + 1e-6;
        using var error = (actual - expected).abs();
        Assert.True(error.le(bound).all().item<bool>(), $"differs by up to {error.max().item<float>()}");
        using var viaBfloat16 = F.linear(x.to(ScalarType.BFloat16).to(ScalarType.Float32), deq);
        Assert.True(error.max().item<float>() < (viaBfloat16 - expected).abs().max().item<float>());
    }

    /// <summary>
    /// int8: input rows taken four at a time (each vector of codes widened once for the four) get each output exactly as
    /// a row alone does, with the integer sums flushed at the same points (4,200 inputs: two flushes and a scalar tail).
    /// </summary>
    [Fact]
    public void Int8RowsFourAtATimeEqualEachRowAlone()
    {
        manual_seed(5);
        using var weight = Int8RowwiseCodec.Quantize(randn(90, 4200) * 0.05);
        using var x = randn(7, 4200);
        using var inference = inference_mode();
        BatchInvariance.AssertEachRowAsAlone(x, rows => Int8MatVec.Multiply(rows, weight));
    }

    /// <summary>
    /// Input rows taken four at a time (each block's codes looked up once for the four) get each output exactly as a row
    /// alone does: a request's tokens do not depend on the rows decoded beside it.
    /// </summary>
    [Theory]
    [InlineData(QuantizationType.Nf4)]
    [InlineData(QuantizationType.Fp4)]
    public void FourBitRowsFourAtATimeEqualEachRowAlone(QuantizationType type)
    {
        if (!System.Runtime.Intrinsics.X86.Avx512BW.IsSupported) return;
        manual_seed(7);
        using var weight = FourBitCodec.For(type).Quantize(randn(70, 192) * 0.05, doubleQuant: true);
        using var x = randn(7, 192);
        using var inference = inference_mode();
        BatchInvariance.AssertEachRowAsAlone(x, rows => FourBitMatVec.Multiply(rows, weight));
    }

    [Fact]
    public void FourBitRowsThatAreNotWholeBlocksStayOnTorch()
    {
        using var weight = FourBitCodec.For(QuantizationType.Nf4).Quantize(randn(8, 96), doubleQuant: false);
        Assert.False(FourBitMatVec.Supports(randn(1, 96), weight));
        using var x = randn(1, 96);
        using var y = weight.MatmulTransposed(x);
        using var expected = F.linear(x, weight.Dequantize(ScalarType.Float32));
        Assert.True(y.allclose(expected, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void Nf4ModelDecodesTheSameTokensWithTheKernelAsWithTorch() => AssertKernelDecodesAsTorch("llama", QuantizationType.Nf4);
}
