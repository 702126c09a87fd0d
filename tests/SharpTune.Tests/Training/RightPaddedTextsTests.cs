using SharpTune.Embeddings;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

public class RightPaddedTextsTests
{
    [Fact]
    public void ARaggedBatchIsPaddedOnTheRightWithNoTargetsAndEachTextsLastTokenWhereItEnds()
    {
        int[][] texts = [[5, 6, 7], [8], [9, 10]];
        var padded = RightPaddedTexts.Of(texts, padTokenId: 1, CPU);
        using var ids = padded.Ids;
        using var noTargets = padded.NoTargets;
        using var positions = padded.Context.PositionIds;

        Assert.Equal([3L, 3L], ids.shape);
        Assert.Equal([5L, 6, 7, /* row 2 */ 8, 1, 1, /* row 3 */ 9, 10, 1], ids.data<long>().ToArray());
        Assert.Equal(Enumerable.Repeat(BatchCollator.IgnoreIndex, 9), noTargets.data<long>().ToArray());
        Assert.Equal([0L, 1, 2, 0, 1, 2, 0, 1, 2], positions.contiguous().data<long>().ToArray());
        Assert.Null(padded.Context.AttentionMask);   // plain causal: no real token sees the padding after it
        Assert.Equal(6, padded.Tokens);
        Assert.Equal([new RowSpan(0, 3, 0), new RowSpan(0, 1, 0), new RowSpan(0, 2, 0)], padded.Rows);
        // The last real token of each row (what last-token pooling reads) is the last id before the padding.
        Assert.Equal([7L, 8, 10], padded.Rows.Select((r, i) => ids[i, r.Start + r.Length - 1].item<long>()).ToArray());
    }

    [Fact]
    public void WithoutAPadIdOnlyASingleTextCanBeBatched()
    {
        using var single = RightPaddedTexts.PaddedIds([[4, 5]], padTokenId: null, CPU);
        Assert.Equal([4L, 5], single.data<long>().ToArray());

        var error = Assert.Throws<InvalidOperationException>(() => RightPaddedTexts.Of([[4, 5], [6]], padTokenId: null, CPU));
        Assert.Contains("config.pad_token_id", error.Message);
    }
}
