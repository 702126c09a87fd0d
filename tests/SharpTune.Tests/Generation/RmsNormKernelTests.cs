using SharpTune.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>The decode-step RMSNorm kernel against the tensor form it replaces.</summary>
public class RmsNormKernelTests
{
    [Theory]
    [InlineData("float32", false, "float32")]
    [InlineData("bfloat16", false, "bfloat16")]
    [InlineData("float32", true, "float32")]     // Gemma's (1 + w)
    [InlineData("bfloat16", true, "bfloat16")]
    [InlineData("bfloat16", true, "float32")]    // Gemma with an fp32 weight and bf16 activations
    [InlineData("float32", false, "float32", 40)]      // a width that is not a multiple of 16: one value at a time
    [InlineData("bfloat16", false, "bfloat16", 40)]
    [InlineData("bfloat16", false, "bfloat16", 96, 130)] // a prefill's rows
    public void EqualsTheTensorForm(string activations, bool unitOffset, string weights, int width = 96, int rows = 3)
    {
        ScalarType Parse(string name) => name == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        manual_seed(8);
        using var norm = new RmsNorm(width, 1e-6, unitOffset);
        using (no_grad()) norm.weight.copy_(randn(width) * 0.3 + (unitOffset ? 0 : 1));
        norm.to(Parse(weights));
        using var x = (randn(rows, 1, width) * 2).to(Parse(activations));
        using var inference = inference_mode();
        using var actual = RmsNormKernel.TryNormalize(x, norm.weight, 1e-6, unitOffset) ?? throw new Xunit.Sdk.XunitException("the kernel declined");
        Tensor expected;
        using (InferenceShortcuts.Disable()) expected = norm.forward(x);
        Assert.Equal(expected.dtype, actual.dtype);
        var differ = actual.to(ScalarType.Float32).ne(expected.to(ScalarType.Float32)).sum().item<long>();
        var worst = (actual.to(ScalarType.Float32) - expected.to(ScalarType.Float32)).abs().max().item<float>();
        // fp32: the same arithmetic up to summation order; bf16: at most a rare one-step rounding difference from it.
        if (Parse(activations) == ScalarType.Float32) Assert.True(worst < 1e-5, $"differs by up to {worst}");
        else Assert.True(differ <= 3 * rows / 3 + 1 && worst <= 0.0625, $"{differ} of {rows * width} values differ, by up to {worst}");
        expected.Dispose();
    }

    [Fact]
    public void ManyRowsAndRecordedGradientsUseTheTensorForm()
    {
        using var norm = new RmsNorm(32, 1e-6);
        using (inference_mode()) Assert.Null(RmsNormKernel.TryNormalize(randn(4097, 32), norm.weight, 1e-6, false));
        Assert.Null(RmsNormKernel.TryNormalize(randn(1, 32), norm.weight, 1e-6, false));   // autograd on
    }
}
