using SharpTune.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Tests.Generation;

/// <summary>The decode-step silu(gate)·up kernel against the tensor form it replaces.</summary>
public class SwiGluKernelTests
{
    [Theory]
    [InlineData("float32", 1, 172)]    // stories260K's width: no vector multiple
    [InlineData("float32", 3, 172)]
    [InlineData("bfloat16", 2, 172)]
    [InlineData("bfloat16", 1, 2048)]  // M's width: whole vectors only
    public void EqualsTheTensorForm(string dtypeName, int rows, int ffn)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        manual_seed(9);
        using var fused = (randn(rows, 1, 2 * ffn) * 3).to(dtype);
        using var inference = inference_mode();
        using var actual = SwiGluKernel.TryApply(fused, ffn) ?? throw new Xunit.Sdk.XunitException("the kernel declined");
        using var expected = F.silu(fused.narrow(-1, 0, ffn)) * fused.narrow(-1, ffn, ffn);
        Assert.Equal(expected.shape, actual.shape);
        using var a = actual.to(ScalarType.Float32);
        using var e = expected.to(ScalarType.Float32);
        var worst = (a - e).abs().max().item<float>();
        // fp32: libtorch's vectorised exp and ours differ by an ulp or so; bf16: at most one step of the output's rounding.
        if (dtype == ScalarType.Float32) Assert.True(a.allclose(e, 1e-5, 1e-6), $"differs by up to {worst}");
        else Assert.True((a - e).abs().le(e.abs() / 128 + 1e-6).all().item<bool>(), $"differs by up to {worst}");
    }

    [Fact]
    public void PrefillSizedInputsAndRecordedGradientsUseTheTensorForm()
    {
        using var many = randn(9, 1, 8);
        using (inference_mode()) Assert.Null(SwiGluKernel.TryApply(many, 4));
        Assert.Null(SwiGluKernel.TryApply(randn(1, 1, 8), 4));   // autograd on
    }
}
