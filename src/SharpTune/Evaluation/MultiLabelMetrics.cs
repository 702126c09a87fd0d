namespace SharpTune.Evaluation;

/// <summary>
/// Multi-label classification metrics with scikit-learn's definitions on label-indicator matrices (zero_division=0):
/// subset accuracy (accuracy_score: a row counts only when every label is right), Hamming loss (hamming_loss: the
/// fraction of wrong label decisions), and precision/recall/F1 per label, micro (counts pooled over labels), macro
/// (unweighted mean over labels) and weighted (mean weighted by each label's support, its number of gold rows).
/// </summary>
public sealed class MultiLabelMetrics
{
    private MultiLabelMetrics(IReadOnlyList<string> labels, int rows, double subsetAccuracy, double hammingLoss,
        IReadOnlyList<ClassMetrics> perLabel, ClassMetrics micro, ClassMetrics macro, ClassMetrics weighted)
    {
        Labels = labels;
        Rows = rows;
        SubsetAccuracy = subsetAccuracy;
        HammingLoss = hammingLoss;
        PerLabel = perLabel;
        Micro = micro;
        Macro = macro;
        Weighted = weighted;
    }

    /// <summary>The labels, in column order.</summary>
    public IReadOnlyList<string> Labels { get; }
    /// <summary>Number of rows scored.</summary>
    public int Rows { get; }
    /// <summary>Fraction of rows whose whole predicted label set equals the gold set.</summary>
    public double SubsetAccuracy { get; }
    /// <summary>Fraction of (row, label) decisions that are wrong.</summary>
    public double HammingLoss { get; }
    /// <summary>Per-label precision, recall, F1 and support, in <see cref="Labels"/> order.</summary>
    public IReadOnlyList<ClassMetrics> PerLabel { get; }
    /// <summary>Counts pooled over every label.</summary>
    public ClassMetrics Micro { get; }
    /// <summary>Unweighted mean of the per-label values.</summary>
    public ClassMetrics Macro { get; }
    /// <summary>Support-weighted mean of the per-label values.</summary>
    public ClassMetrics Weighted { get; }

    /// <summary>Computes the metrics from gold and predicted indicator rows (each <paramref name="labels"/> long).</summary>
    public static MultiLabelMetrics Compute(IReadOnlyList<bool[]> gold, IReadOnlyList<bool[]> predicted, IReadOnlyList<string> labels)
    {
        ArgumentNullException.ThrowIfNull(gold);
        ArgumentNullException.ThrowIfNull(predicted);
        if (gold.Count != predicted.Count)
            throw new ArgumentException($"There are {gold.Count} gold rows but {predicted.Count} predicted rows.", nameof(predicted));
        var k = labels.Count;
        long[] truePositives = new long[k], predictedCounts = new long[k], supports = new long[k];
        long exact = 0, wrong = 0;
        for (var n = 0; n < gold.Count; n++)
        {
            if (gold[n].Length != k || predicted[n].Length != k)
                throw new ArgumentException($"row {n} has {gold[n].Length} gold and {predicted[n].Length} predicted labels, expected {k}");
            var rowWrong = 0;
            for (var c = 0; c < k; c++)
            {
                if (gold[n][c]) supports[c]++;
                if (predicted[n][c]) predictedCounts[c]++;
                if (gold[n][c] && predicted[n][c]) truePositives[c]++;
                if (gold[n][c] != predicted[n][c]) rowWrong++;
            }
            wrong += rowWrong;
            if (rowWrong == 0) exact++;
        }
        var perLabel = Enumerable.Range(0, k).Select(c => Metrics(labels[c], truePositives[c], predictedCounts[c], supports[c])).ToList();
        var supportSum = supports.Sum();
        var micro = Metrics("micro avg", truePositives.Sum(), predictedCounts.Sum(), supportSum);
        var macro = k == 0 ? new ClassMetrics("macro avg", 0, 0, 0, 0)
            : new ClassMetrics("macro avg", perLabel.Average(m => m.Precision), perLabel.Average(m => m.Recall), perLabel.Average(m => m.F1), (int)supportSum);
        var weighted = supportSum == 0 ? new ClassMetrics("weighted avg", 0, 0, 0, 0)
            : new ClassMetrics("weighted avg", perLabel.Sum(m => m.Precision * m.Support) / supportSum,
                perLabel.Sum(m => m.Recall * m.Support) / supportSum, perLabel.Sum(m => m.F1 * m.Support) / supportSum, (int)supportSum);
        var rows = gold.Count;
        return new MultiLabelMetrics(labels, rows, rows == 0 ? 0 : (double)exact / rows,
            rows == 0 || k == 0 ? 0 : (double)wrong / ((long)rows * k), perLabel, micro, macro, weighted);
    }

    // sklearn's precision_recall_fscore_support with zero_division=0: an undefined ratio is 0.
    private static ClassMetrics Metrics(string label, long truePositives, long predicted, long support)
    {
        var precision = predicted == 0 ? 0 : (double)truePositives / predicted;
        var recall = support == 0 ? 0 : (double)truePositives / support;
        var f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
        return new ClassMetrics(label, precision, recall, f1, (int)support);
    }
}
