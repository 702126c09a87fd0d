using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

public class RotationTemporariesTests
{
    /// <summary>
    /// Rotating q or k leaves one tensor, its result, in the caller's dispose scope: the products and the roll are freed
    /// inside, whole head or partial rotary, with autograd on (a layer's scope would otherwise hold three more copies of
    /// q and k until the layer ends, in every training forward and recomputation). The gradient still reaches the input.
    /// </summary>
    [Theory]
    [InlineData(16)]
    [InlineData(8)]
    public void ApplyRotationLeavesOnlyItsResultInTheCallersScope(int rotaryDim)
    {
        using var rope = new RotaryEmbedding(rotaryDim, 10000, null, CPU);
        using var positions = tensor(new long[,] { { 0, 1, 2, 3, 4 } });
        var tables = rope.RotationTables(positions, ScalarType.Float32);
        using var q = randn(1, 2, 5, 16).requires_grad_(true);
        Tensor rotated;
        using (var scope = NewDisposeScope())
        {
            var before = scope.DisposablesCount;
            rotated = RotaryEmbedding.ApplyRotation(q, tables);
            Assert.Equal(before + 1, scope.DisposablesCount);
            rotated.MoveToOuterDisposeScope();
        }
        rotated.sum().backward();
        Assert.True(q.grad!.abs().sum().item<float>() > 0);
        tables.Cos.Dispose();
        tables.SignedSin.Dispose();
    }
}
