namespace SharpTune.Evaluation;

/// <summary>A confidence interval for an aggregated ROUGE score: low, mid and high.</summary>
public readonly record struct RougeInterval(RougeScore Low, RougeScore Mid, RougeScore High);

/// <summary>
/// Corpus-level ROUGE from per-pair scores. rouge-score's <c>BootstrapAggregator</c> reports the median of bootstrap
/// sample means as "mid", which approaches the plain mean over pairs as the sample count grows; <see cref="Mean"/>
/// returns that mean exactly (deterministic, what reports should quote), and <see cref="Bootstrap"/> reproduces the
/// aggregator's procedure (resample pairs with replacement, numpy-style linear percentiles) with a fixed seed.
/// </summary>
public static class RougeAggregate
{
    /// <summary>Mean precision, recall and F1 over pairs for every ROUGE type present in the first pair.</summary>
    public static IReadOnlyDictionary<string, RougeScore> Mean(IReadOnlyList<IReadOnlyDictionary<string, RougeScore>> pairScores)
    {
        ArgumentNullException.ThrowIfNull(pairScores);
        if (pairScores.Count == 0) throw new ArgumentException("No scores to aggregate.", nameof(pairScores));
        return pairScores[0].Keys.ToDictionary(type => type, type =>
        {
            var scores = pairScores.Select(p => p[type]).ToList();
            return new RougeScore(scores.Average(s => s.Precision), scores.Average(s => s.Recall), scores.Average(s => s.FMeasure));
        });
    }

    /// <summary>
    /// Bootstrap confidence interval of the mean, as rouge-score's BootstrapAggregator computes it (its defaults:
    /// 1000 samples, 95%); <paramref name="seed"/> makes it reproducible.
    /// </summary>
    public static IReadOnlyDictionary<string, RougeInterval> Bootstrap(
        IReadOnlyList<IReadOnlyDictionary<string, RougeScore>> pairScores, int samples = 1000, double confidence = 0.95, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(pairScores);
        if (pairScores.Count == 0) throw new ArgumentException("No scores to aggregate.", nameof(pairScores));
        if (samples <= 0) throw new ArgumentOutOfRangeException(nameof(samples), samples, "samples must be positive.");
        if (confidence is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(confidence), confidence, "confidence must be in [0, 1].");

        double delta = (1 - confidence) / 2;
        double[] quantiles = [delta, 0.5, 1 - delta];
        var result = new Dictionary<string, RougeInterval>(StringComparer.Ordinal);
        foreach (var type in pairScores[0].Keys)
        {
            var scores = pairScores.Select(p => p[type]).ToArray();
            var random = new Random(seed);
            var means = new double[3][];
            for (int k = 0; k < 3; k++) means[k] = new double[samples];
            for (int s = 0; s < samples; s++)
            {
                double p = 0, r = 0, f = 0;
                for (int i = 0; i < scores.Length; i++)
                {
                    var pick = scores[random.Next(scores.Length)];
                    p += pick.Precision; r += pick.Recall; f += pick.FMeasure;
                }
                means[0][s] = p / scores.Length; means[1][s] = r / scores.Length; means[2][s] = f / scores.Length;
            }
            foreach (var column in means) Array.Sort(column);
            RougeScore At(double q) => new(Percentile(means[0], q), Percentile(means[1], q), Percentile(means[2], q));
            result[type] = new RougeInterval(At(quantiles[0]), At(quantiles[1]), At(quantiles[2]));
        }
        return result;
    }

    // numpy.percentile's default 'linear' method on sorted data.
    internal static double Percentile(double[] sorted, double quantile)
    {
        double position = quantile * (sorted.Length - 1);
        int lower = (int)Math.Floor(position);
        int upper = Math.Min(lower + 1, sorted.Length - 1);
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - lower);
    }
}
