using System.Globalization;
using System.Text;

namespace SharpTune.Evaluation;

/// <summary>Precision, recall, F1 and support of one class (or one average), on 0–1.</summary>
public sealed record ClassMetrics(string Label, double Precision, double Recall, double F1, int Support);

/// <summary>
/// Classification metrics with scikit-learn's <c>classification_report</c> semantics (zero_division=0): labels are
/// the sorted union of gold and predicted labels unless given; macro averages per-class values, weighted averages
/// them by support, micro pools counts over the labels; the confusion matrix has gold labels as rows and
/// predictions as columns.
/// </summary>
public sealed class ClassificationMetrics
{
    private ClassificationMetrics(IReadOnlyList<string> labels, int[,] confusion, int[] truePositives, int[] predictedCounts,
        int[] supports, int total, int correct, bool labelsCoverAll)
    {
        Labels = labels;
        ConfusionMatrix = confusion;
        int k = labels.Count;
        var perClass = Enumerable.Range(0, k).Select(c => Metrics(labels[c], truePositives[c], predictedCounts[c], supports[c])).ToList();
        long supportSum = supports.Sum(s => (long)s);
        PerClass = perClass;
        Total = total;
        _correct = correct;
        Accuracy = total == 0 ? 0 : (double)correct / total;
        Micro = Metrics("micro avg", truePositives.Sum(t => (long)t), predictedCounts.Sum(p => (long)p), supportSum);
        Macro = k == 0 ? new ClassMetrics("macro avg", 0, 0, 0, 0)
            : new ClassMetrics("macro avg", perClass.Average(m => m.Precision), perClass.Average(m => m.Recall),
                perClass.Average(m => m.F1), (int)supportSum);
        Weighted = supportSum == 0 ? new ClassMetrics("weighted avg", 0, 0, 0, 0)
            : new ClassMetrics("weighted avg", perClass.Sum(m => m.Precision * m.Support) / supportSum,
                perClass.Sum(m => m.Recall * m.Support) / supportSum, perClass.Sum(m => m.F1 * m.Support) / supportSum,
                (int)supportSum);
        MicroIsAccuracy = labelsCoverAll;
    }

    private readonly int _correct;

    /// <summary>Class labels in matrix order.</summary>
    public IReadOnlyList<string> Labels { get; }
    /// <summary>Counts: row = gold label index, column = predicted label index.</summary>
    public int[,] ConfusionMatrix { get; }
    /// <summary>Number of (gold, predicted) pairs.</summary>
    public int Total { get; }
    /// <summary>Fraction of pairs whose prediction equals the gold label.</summary>
    public double Accuracy { get; }
    /// <summary>Per-class precision, recall, F1 and support, in <see cref="Labels"/> order.</summary>
    public IReadOnlyList<ClassMetrics> PerClass { get; }
    /// <summary>Counts pooled over the labels (equals accuracy when the labels cover every class seen).</summary>
    public ClassMetrics Micro { get; }
    /// <summary>Unweighted mean of per-class values.</summary>
    public ClassMetrics Macro { get; }
    /// <summary>Support-weighted mean of per-class values.</summary>
    public ClassMetrics Weighted { get; }
    /// <summary>True when the labels are exactly the classes seen, so the report shows an accuracy row instead of micro (as sklearn).</summary>
    public bool MicroIsAccuracy { get; }

    /// <summary>
    /// Computes the metrics. <paramref name="labels"/> restricts and orders the classes (as sklearn's <c>labels</c>);
    /// by default the sorted union of the gold and predicted labels.
    /// </summary>
    public static ClassificationMetrics Compute<T>(IReadOnlyList<T> gold, IReadOnlyList<T> predicted, IReadOnlyList<T>? labels = null)
        where T : notnull
    {
        ArgumentNullException.ThrowIfNull(gold);
        ArgumentNullException.ThrowIfNull(predicted);
        if (gold.Count != predicted.Count)
            throw new ArgumentException($"There are {gold.Count} gold labels but {predicted.Count} predictions.", nameof(predicted));
        var seen = gold.Concat(predicted).Distinct().Order(LabelOrder<T>()).ToList();
        var classes = labels?.ToList() ?? seen;
        if (classes.Distinct().Count() != classes.Count) throw new ArgumentException("Labels must be distinct.", nameof(labels));
        var index = classes.Select((label, i) => (label, i)).ToDictionary(p => p.label, p => p.i);
        int k = classes.Count;
        var confusion = new int[k, k];
        // Per-class counts come from the full lists (as sklearn's multilabel_confusion_matrix), so a gold label
        // predicted as a class outside `labels` still counts in that label's support.
        int[] truePositives = new int[k], predictedCounts = new int[k], supports = new int[k];
        int correct = 0;
        for (int n = 0; n < gold.Count; n++)
        {
            bool hasGold = index.TryGetValue(gold[n], out int g), hasPredicted = index.TryGetValue(predicted[n], out int p);
            if (EqualityComparer<T>.Default.Equals(gold[n], predicted[n]))
            {
                correct++;
                if (hasGold) truePositives[g]++;
            }
            if (hasGold) supports[g]++;
            if (hasPredicted) predictedCounts[p]++;
            if (hasGold && hasPredicted) confusion[g, p]++;
        }
        // sklearn 1.2's classification_report prints an accuracy row only when the labels are exactly the classes seen
        // (set(labels) == set(unique_labels(y_true, y_pred))); extra labels that never occur bring back "micro avg".
        bool coversAll = seen.Count == classes.Count && seen.All(index.ContainsKey);
        return new ClassificationMetrics(
            classes.Select(c => Convert.ToString(c, CultureInfo.InvariantCulture) ?? "").ToList(), confusion, truePositives, predictedCounts, supports, gold.Count, correct, coversAll);
    }

    // sklearn sorts labels with numpy (np.unique): strings by code point, never by culture ("B" before "a").
    private static IComparer<T> LabelOrder<T>() =>
        typeof(T) == typeof(string) ? (IComparer<T>)(object)Comparer<string>.Create(PythonText.CompareCodePoints) : Comparer<T>.Default;

    private static ClassMetrics Metrics(string label, long truePositives, long predicted, long support)
    {
        double precision = predicted == 0 ? 0 : (double)truePositives / predicted;
        double recall = support == 0 ? 0 : (double)truePositives / support;
        double f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
        return new ClassMetrics(label, precision, recall, f1, (int)support);
    }

    /// <summary>The text of sklearn's <c>classification_report</c> (same layout and rounding).</summary>
    public string ToReport(int digits = 2, IReadOnlyList<string>? targetNames = null)
    {
        var names = targetNames ?? Labels;
        if (names.Count != Labels.Count)
            throw new ArgumentException($"{names.Count} target names given for {Labels.Count} labels.", nameof(targetNames));
        var c = CultureInfo.InvariantCulture;
        // Widths count code points, as Python's len and format do.
        int width = Math.Max(Math.Max(names.DefaultIfEmpty("").Max(PythonText.CodePointLength), "weighted avg".Length), digits);
        string Pad(string text, int size) => text.PadLeft(size + text.Length - PythonText.CodePointLength(text));
        string Number(double v) => v.ToString("F" + digits, c).PadLeft(9);
        // When no prediction is correct, sklearn 1.2's multilabel_confusion_matrix builds its counts from float zeros
        // ("pathological case"), so classification_report prints every support as a float: "1.0", not "1".
        string Support(int support) => (_correct == 0 && Total > 0 ? support.ToString(c) + ".0" : support.ToString(c)).PadLeft(9);
        // sklearn's row format: "{:>{width}s} " followed by " {:>9.{digits}f}" three times and " {:>9}".
        string Row(string heading, ClassMetrics m) =>
            Pad(heading, width) + "  " + Number(m.Precision) + " " + Number(m.Recall) + " " + Number(m.F1) + " "
            + Support(m.Support) + "\n";

        var report = new StringBuilder();
        report.Append("".PadLeft(width)).Append(' ');
        foreach (var header in new[] { "precision", "recall", "f1-score", "support" }) report.Append(' ').Append(header.PadLeft(9));
        report.Append("\n\n");
        for (int i = 0; i < Labels.Count; i++) report.Append(Row(names[i], PerClass[i]));
        report.Append('\n');
        if (MicroIsAccuracy)
            report.Append("accuracy".PadLeft(width)).Append("  ").Append("".PadLeft(9)).Append(' ').Append("".PadLeft(9))
                  .Append(' ').Append(Number(Micro.F1)).Append(' ').Append(Support(Micro.Support)).Append('\n');
        else report.Append(Row("micro avg", Micro));
        report.Append(Row("macro avg", Macro));
        report.Append(Row("weighted avg", Weighted));
        return report.ToString();
    }

    /// <summary>Saves the confusion matrix as a PNG heatmap with the count written in each cell.</summary>
    public void SaveConfusionMatrixPlot(string path, string title = "Confusion matrix") =>
        ConfusionMatrixPlot.Save(this, path, title);
}
