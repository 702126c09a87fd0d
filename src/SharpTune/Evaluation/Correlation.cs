namespace SharpTune.Evaluation;

/// <summary>
/// Correlation coefficients as SciPy computes them: scipy.stats.pearsonr (clamped to [−1, 1] as pearsonr clamps its
/// rounding), spearmanr (Pearson's r of the ranks) and rankdata's "average" ranks. A constant side, or fewer than two
/// values, has no correlation: NaN, as SciPy returns for a constant input. One home for the regression head's metrics and
/// the embedding similarity evaluator's.
/// </summary>
public static class Correlation
{
    /// <summary>Pearson's r of two equally long series; NaN when either side is constant or there are fewer than two values.</summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Count != y.Count) throw new ArgumentException($"series of {x.Count} and {y.Count} values cannot be correlated");
        if (x.Count < 2) return double.NaN;
        double meanX = x.Average(), meanY = y.Average(), xy = 0, xx = 0, yy = 0;
        for (var i = 0; i < x.Count; i++)
        {
            double dx = x[i] - meanX, dy = y[i] - meanY;
            xy += dx * dy;
            xx += dx * dx;
            yy += dy * dy;
        }
        return xx == 0 || yy == 0 ? double.NaN : Math.Clamp(xy / Math.Sqrt(xx * yy), -1, 1);
    }

    /// <summary>Spearman's ρ: <see cref="Pearson"/> of the average ranks.</summary>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y) => Pearson(Ranks(x), Ranks(y));

    /// <summary>1-based ranks, tied values sharing the mean of their ranks (scipy.stats.rankdata's "average").</summary>
    public static double[] Ranks(IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (var start = 0; start < order.Length;)
        {
            var end = start;
            while (end + 1 < order.Length && values[order[end + 1]] == values[order[start]]) end++;
            var rank = (start + end) / 2.0 + 1;   // the mean of ranks start+1 .. end+1
            for (var j = start; j <= end; j++) ranks[order[j]] = rank;
            start = end + 1;
        }
        return ranks;
    }
}
