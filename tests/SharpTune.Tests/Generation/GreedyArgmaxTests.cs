using SharpTune.Generation;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation;

/// <summary>The greedy pick over CPU logits against <c>torch.argmax</c>, ties and NaN included.</summary>
public class GreedyArgmaxTests
{
    [Theory]
    [InlineData("float32")]
    [InlineData("bfloat16")]
    public void PicksWhatTorchArgmaxPicks(string dtypeName)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        manual_seed(3);
        using var logits = (randn(4, 32000) * 4).to(dtype);
        // Row 1: a tie between two maxima (the first wins); row 2: a NaN after the maximum (the NaN wins); row 3: all
        // -inf (index 0).
        logits[1, 100] = tensor(50f).to(dtype);
        logits[1, 200] = tensor(50f).to(dtype);
        logits[2, 7] = tensor(60f).to(dtype);
        logits[2, 31000] = tensor(float.NaN).to(dtype);
        logits[3] = full(32000, float.NegativeInfinity).to(dtype);
        var picks = GreedyArgmax.TryPick(logits) ?? throw new Xunit.Sdk.XunitException("the kernel declined");
        Assert.Equal(logits.argmax(-1).data<long>().ToArray(), picks);
        Assert.Equal(100, picks[1]);
        Assert.Equal(31000, picks[2]);
    }

    [Fact]
    public void NonContiguousOrDisabledLogitsGoToTorch()
    {
        using var logits = randn(3, 8);
        Assert.Null(GreedyArgmax.TryPick(logits.t()));
        using (InferenceShortcuts.Disable()) Assert.Null(GreedyArgmax.TryPick(logits));
        Assert.NotNull(GreedyArgmax.TryPick(logits));
    }
}
