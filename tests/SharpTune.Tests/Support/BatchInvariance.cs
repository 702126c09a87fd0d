using static TorchSharp.torch;

namespace SharpTune.Tests.Support;

/// <summary>
/// A decode kernel's batch against each of its rows alone: a request's outputs must not depend on the rows decoded beside
/// it, bit for bit.
/// </summary>
internal static class BatchInvariance
{
    /// <summary>Asserts that <paramref name="multiply"/> of every row of <paramref name="x"/> (rows, in) equals its rows' products one at a time.</summary>
    public static void AssertEachRowAsAlone(Tensor x, Func<Tensor, Tensor> multiply)
    {
        using var together = multiply(x);
        for (var r = 0; r < x.size(0); r++)
        {
            using var row = x[r].unsqueeze(0).contiguous();
            using var alone = multiply(row);
            Assert.True(alone[0].equal(together[r]).all().item<bool>(), $"row {r} differs alone and in the batch of {x.size(0)}");
        }
    }

    /// <summary>The same for a decode-pass projection of fp32 rows, which writes into a buffer it is given.</summary>
    public static void AssertEachRowAsAlone(Tensor x, SharpTune.Models.DecodeProjection projection)
    {
        Assert.Equal(ScalarType.Float32, x.dtype);   // bf16 rows need the pass's scratch for their fp32 split
        AssertEachRowAsAlone(x, rows =>
        {
            var output = empty(rows.size(0), projection.OutFeatures);
            projection.Multiply(SharpTune.Models.DecodeLayerStack.Pointer(rows), SharpTune.Models.DecodeLayerStack.Pointer(output),
                (int)rows.size(0), false, default);
            return output;
        });
    }
}
