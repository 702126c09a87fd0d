using SharpTune.Data.Curation;

namespace SharpTune.Tests.Data;

public class MinHashTests
{
    // Random word texts where a chosen fraction of words is replaced, giving pairs across the whole Jaccard range.
    private static IEnumerable<(string A, string B)> GeneratedPairs(int count, int seed)
    {
        var rng = new Random(seed);
        string Word() => new(Enumerable.Range(0, rng.Next(3, 9)).Select(_ => (char)('a' + rng.Next(26))).ToArray());
        for (int p = 0; p < count; p++)
        {
            var words = Enumerable.Range(0, 40).Select(_ => Word()).ToArray();
            var other = (string[])words.Clone();
            double change = (double)p / count;
            for (int i = 0; i < other.Length; i++) if (rng.NextDouble() < change) other[i] = Word();
            yield return (string.Join(' ', words), string.Join(' ', other));
        }
    }

    [Fact]
    public void Estimates_match_exact_jaccard_within_tolerance()
    {
        // With k = 128 permutations the estimate's standard error is sqrt(J(1-J)/128) <= 0.044, so every pair should
        // be within 0.15 (3.4 sigma) and the mean absolute error within 0.04.
        var hasher = new MinHasher();
        var errors = new List<double>();
        foreach (var (a, b) in GeneratedPairs(200, seed: 7))
        {
            double exact = hasher.ExactJaccard(a, b);
            double estimate = MinHasher.EstimateJaccard(hasher.Signature(a), hasher.Signature(b));
            errors.Add(Math.Abs(exact - estimate));
        }
        Assert.True(errors.Max() < 0.15, $"max error {errors.Max():F3}");
        Assert.True(errors.Average() < 0.04, $"mean error {errors.Average():F3}");
    }

    [Fact]
    public void Signatures_are_reproducible_and_seed_dependent()
    {
        const string text = "the quick brown fox jumps over the lazy dog";
        Assert.Equal(new MinHasher().Signature(text), new MinHasher().Signature(text));
        Assert.NotEqual(new MinHasher().Signature(text), new MinHasher(new MinHashOptions(Seed: 1)).Signature(text));
    }

    [Fact]
    public void Exact_jaccard_matches_hand_worked_value()
    {
        // Word 1-grams: {a,b,c,d} vs {b,c,d,e}: |∩| = 3, |∪| = 5.
        var hasher = new MinHasher(new MinHashOptions(Unit: ShingleUnit.Words, ShingleSize: 1));
        Assert.Equal(0.6, hasher.ExactJaccard("a b c d", "b c d e"), 10);
    }

    [Theory]
    [InlineData(0.8, 128)]
    [InlineData(0.5, 128)]
    [InlineData(0.9, 256)]
    public void Lsh_parameters_put_the_s_curve_near_the_threshold(double threshold, int permutations)
    {
        var p = LshParameters.ForThreshold(threshold, permutations);
        Assert.True(p.Bands * p.RowsPerBand <= permutations);
        Assert.InRange(p.ApproximateThreshold, threshold - 0.12, threshold + 0.05);
        Assert.True(LshParameters.CandidateProbability(threshold + 0.1, p.Bands, p.RowsPerBand) > 0.85);
        Assert.True(LshParameters.CandidateProbability(threshold - 0.3, p.Bands, p.RowsPerBand) < 0.25);
    }

    [Fact]
    public void Balanced_parameters_match_datasketch_and_the_index_favours_recall()
    {
        // datasketch's MinHashLSH(threshold=0.8, num_perm=128) chooses b = 9, r = 13 with its default 0.5/0.5 weights.
        Assert.Equal(new LshParameters(9, 13), LshParameters.ForThreshold(0.8, 128));
        var index = new NearDuplicateIndex(0.8);
        Assert.True(LshParameters.CandidateProbability(0.8, index.Parameters.Bands, index.Parameters.RowsPerBand) > 0.8);
    }

    [Fact]
    public void Index_catches_known_near_duplicates_and_keeps_distinct_texts()
    {
        var texts = new[]
        {
            "The cat sat on the mat and looked out of the window at the rain.",
            "The cat sat on the mat and looked out of the window at the rain!",
            "the cat sat on the mat, and looked out of the window at the rain.",
            "Quarterly revenue grew by twelve percent, driven by strong cloud sales.",
            "Quarterly revenue grew by 12 percent, driven by strong cloud sales.",
            "A completely different sentence about mountains and rivers in spring.",
            "Photosynthesis converts light energy into chemical energy in plants.",
        };
        var clusters = NearDuplicateClusters.Assign(texts, threshold: 0.7);
        Assert.Equal([0, 0, 0, 3, 3, 5, 6], clusters);
    }

    [Fact]
    public void Clustering_many_rows_finds_planted_pairs_and_nothing_else()
    {
        var rng = new Random(3);
        string Sentence() => string.Join(' ', Enumerable.Range(0, 12).Select(_ => new string((char)('a' + rng.Next(26)), 1) + rng.Next(1000)));
        var texts = Enumerable.Range(0, 5000).Select(_ => Sentence()).ToList();
        for (int i = 0; i < 50; i++) texts.Add(texts[i * 10] + " .");
        // How the time grows with rows is measured by bench/DataCleanBench (--scaling) on a quiet machine.
        var clusters = NearDuplicateClusters.Assign(texts, 0.8);
        for (int i = 0; i < 50; i++) Assert.Equal(clusters[i * 10], clusters[5000 + i]);
        Assert.Equal(5000, clusters.Distinct().Count());
    }
}
