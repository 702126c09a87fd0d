using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>The decode-step RoPE kernel against the tensor form it replaces (<see cref="RotaryEmbedding.ApplyRotation"/>).</summary>
public class RotaryDecodeKernelTests
{
    [Theory]
    [InlineData("float32", 1, 4, 2, 64, false)]    // grouped-query heads
    [InlineData("float32", 3, 2, 2, 8, true)]      // one table row per batch row (different positions)
    [InlineData("bfloat16", 1, 12, 12, 64, false)] // the M shape
    [InlineData("bfloat16", 2, 6, 2, 32, true)]
    public void EqualsTheTensorFormBitForBit(string dtypeName, int batch, int heads, int kvHeads, int headDim, bool tablePerRow)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        manual_seed(21);
        using var rope = new RotaryEmbedding(headDim, 10000.0, null, CPU);
        using var positions = tablePerRow ? tensor(Enumerable.Range(0, batch).Select(b => (long)(17 + 5 * b)).ToArray()).view(batch, 1)
            : tensor(new long[] { 41 }).view(1, 1);
        var (cos, sin) = rope.RotationTables(positions, dtype);
        using (cos)
        using (sin)
        using (var qkv = (randn(batch, 1, (heads + 2 * kvHeads) * headDim) * 2).to(dtype))
        using (inference_mode())
        {
            using var actual = RotaryDecodeKernel.TryRotate(qkv, batch, heads + kvHeads, headDim, (cos, sin))
                               ?? throw new Xunit.Sdk.XunitException("the kernel declined");
            using var expected = RotaryEmbedding.ApplyRotation(qkv.reshape(batch, heads + 2 * kvHeads, 1, headDim).narrow(1, 0, heads + kvHeads),
                (cos, sin));
            Assert.Equal(expected.shape, actual.shape);
            Assert.True(actual.eq(expected).all().item<bool>(), $"differs by up to {(actual.to(ScalarType.Float32) - expected.to(ScalarType.Float32)).abs().max().item<float>()}");
        }
    }

    [Theory]
    [InlineData("float32", 1, 4, 2, 64, false)]
    [InlineData("bfloat16", 3, 12, 12, 64, false)]  // the M shape: one table row per token, shared by every row
    [InlineData("bfloat16", 2, 6, 2, 32, true)]     // one table row per token of each row (left padding moves positions)
    [InlineData("float32", 2, 2, 1, 8, true)]       // heads of 8: one value at a time
    public void PromptTokensEqualTheTensorFormBitForBit(string dtypeName, int batch, int heads, int kvHeads, int headDim, bool tablePerRow)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        const int tokens = 19;
        manual_seed(22);
        using var scope = NewDisposeScope();
        var rope = new RotaryEmbedding(headDim, 10000.0, null, CPU);
        var positions = tablePerRow
            ? stack(Enumerable.Range(0, batch).Select(b => arange(3 * b, 3 * b + tokens)).ToArray())
            : arange(tokens).view(1, tokens);
        var tables = rope.RotationTables(positions, dtype);
        // Queries and keys as the fused q/k/v product's views: each token's heads contiguous, tokens a whole product apart.
        var qkv = (randn(batch, tokens, (heads + 2 * kvHeads) * headDim) * 2).to(dtype);
        using var inference = inference_mode();
        foreach (var (first, count) in new[] { (0, heads), (heads, kvHeads) })
        {
            var part = qkv.narrow(2, first * headDim, count * headDim);
            var actual = RotaryDecodeKernel.TryRotateTokens(part, count, headDim, tables) ?? throw new Xunit.Sdk.XunitException("the kernel declined");
            var expected = RotaryEmbedding.ApplyRotation(part.view(batch, tokens, count, headDim).transpose(1, 2), tables).transpose(1, 2);
            Assert.Equal(expected.shape, actual.shape);
            Assert.True(actual.eq(expected).all().item<bool>(),
                $"differs by up to {(actual.to(ScalarType.Float32) - expected.to(ScalarType.Float32)).abs().max().item<float>()}");
        }
        rope.Dispose();
    }

    [Fact]
    public void PartialRotaryGradientsAndPrefillUseTheTensorForm()
    {
        using var rope = new RotaryEmbedding(8, 10000.0, null, CPU);
        var (cos, sin) = rope.RotationTables(tensor(new long[] { 3 }).view(1, 1), ScalarType.Float32);
        using var qkv = randn(1, 1, 3 * 16);
        Assert.Null(RotaryDecodeKernel.TryRotate(qkv, 1, 2, 16, (cos, sin)));        // rotary dim 8 of head dim 16
        using var exact = randn(1, 1, 3 * 8);
        Assert.Null(RotaryDecodeKernel.TryRotate(exact, 1, 2, 8, (cos, sin)));       // autograd on
        using (inference_mode()) Assert.NotNull(RotaryDecodeKernel.TryRotate(exact, 1, 2, 8, (cos, sin)));
        cos.Dispose();
        sin.Dispose();
    }
}
