namespace SharpTune.Evaluation;

/// <summary>
/// Regression metrics of predictions against gold values, as scikit-learn and SciPy define them:
/// mean_squared_error, mean_absolute_error, its square root, r2_score (1 − SS_res / SS_tot; with constant gold values,
/// 1 when every prediction is exact and 0 otherwise, sklearn's force_finite default), scipy.stats.pearsonr and
/// spearmanr (Pearson's r of the ranks, ties given their average rank). A correlation with a constant side is NaN, as SciPy
/// returns it.
/// </summary>
public sealed record RegressionMetrics(int Count, double Mse, double Mae, double Rmse, double Pearson, double Spearman, double R2)
{
    /// <summary>Computes the metrics; <paramref name="gold"/> and <paramref name="predicted"/> are paired by index.</summary>
    public static RegressionMetrics Compute(IReadOnlyList<double> gold, IReadOnlyList<double> predicted)
    {
        ArgumentNullException.ThrowIfNull(gold);
        ArgumentNullException.ThrowIfNull(predicted);
        if (gold.Count != predicted.Count)
            throw new ArgumentException($"There are {gold.Count} gold values but {predicted.Count} predictions.", nameof(predicted));
        if (gold.Count == 0) throw new ArgumentException("no values to score", nameof(gold));
        var n = gold.Count;
        double squared = 0, absolute = 0;
        for (var i = 0; i < n; i++)
        {
            var error = predicted[i] - gold[i];
            squared += error * error;
            absolute += Math.Abs(error);
        }
        var mean = gold.Average();
        var total = gold.Sum(g => (g - mean) * (g - mean));
        var r2 = total == 0 ? (squared == 0 ? 1 : 0) : 1 - squared / total;
        return new RegressionMetrics(n, squared / n, absolute / n, Math.Sqrt(squared / n),
            Correlation.Pearson(gold, predicted), Correlation.Spearman(gold, predicted), r2);
    }
}
