using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

/// <summary>
/// EmbeddingSimilarityEvaluator's correlations against the values scipy's documentation publishes for its own examples
/// (scipy.stats.pearsonr: x = 1…7, y = [10, 9, 2.5, 6, 4, 3, 2] → −0.828503883588428; scipy.stats.spearmanr:
/// [1, 2, 3, 4, 5] vs [5, 6, 7, 8, 7], a tie → 0.8207826816681233).
/// </summary>
public sealed class SimilarityCorrelationTests
{
    [Fact]
    public void Pearson_and_spearman_match_scipys_published_examples()
    {
        Assert.Equal(-0.828503883588428, Correlation.Pearson([1, 2, 3, 4, 5, 6, 7], [10, 9, 2.5, 6, 4, 3, 2]), 12);
        Assert.Equal(0.8207826816681233, Correlation.Spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]), 12);
        Assert.Equal([1, 2, 3, 4.5, 4.5], Correlation.Ranks([5, 6, 7, 8, 8]));
    }

    [Fact]
    public void A_constant_series_has_no_correlation()
    {
        Assert.True(double.IsNaN(Correlation.Pearson([1, 1, 1], [1, 2, 3])));
        Assert.Throws<ArgumentException>(() => Correlation.Pearson([1, 2], [1, 2, 3]));
    }
}
