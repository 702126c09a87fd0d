using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

public class ClassificationMetricsTests
{
    [Fact]
    public void SklearnDocsExample_ReportMatchesExactly()
    {
        // scikit-learn's classification_report documentation example; the expected text is what sklearn 1.2.1
        // (Debian python3-sklearn) prints for classification_report(y_true, y_pred, target_names=...).
        int[] yTrue = [0, 1, 2, 2, 2];
        int[] yPred = [0, 0, 2, 2, 1];
        var metrics = ClassificationMetrics.Compute(yTrue, yPred);
        const string expected =
            "              precision    recall  f1-score   support\n\n" +
            "     class 0       0.50      1.00      0.67         1\n" +
            "     class 1       0.00      0.00      0.00         1\n" +
            "     class 2       1.00      0.67      0.80         3\n\n" +
            "    accuracy                           0.60         5\n" +
            "   macro avg       0.50      0.56      0.49         5\n" +
            "weighted avg       0.70      0.60      0.61         5\n";
        Assert.Equal(expected, metrics.ToReport(targetNames: ["class 0", "class 1", "class 2"]));
        Assert.Equal(0.6, metrics.Accuracy, 1e-12);
        Assert.Equal(0.5, metrics.PerClass[0].Precision, 1e-12);
        Assert.Equal(2.0 / 3, metrics.PerClass[0].F1, 1e-12);
        Assert.Equal(0.0, metrics.PerClass[1].F1); // zero_division = 0
        Assert.Equal(3, metrics.PerClass[2].Support);
        Assert.Equal((2.0 / 3 + 0 + 0.8) / 3, metrics.Macro.F1, 1e-12);
        Assert.Equal((1 * 2.0 / 3 + 0 + 3 * 0.8) / 5, metrics.Weighted.F1, 1e-12);
    }

    [Fact]
    public void SklearnDocsExample_WithLabelSubset_ShowsMicroAverage()
    {
        // Second classification_report docs example: labels=[1, 2, 3] do not cover the predicted 0, so a micro
        // average row replaces accuracy (text from sklearn 1.2.1).
        var metrics = ClassificationMetrics.Compute([1, 1, 1], [1, 1, 0], labels: [1, 2, 3]);
        const string expected =
            "              precision    recall  f1-score   support\n\n" +
            "           1       1.00      0.67      0.80         3\n" +
            "           2       0.00      0.00      0.00         0\n" +
            "           3       0.00      0.00      0.00         0\n\n" +
            "   micro avg       1.00      0.67      0.80         3\n" +
            "   macro avg       0.33      0.22      0.27         3\n" +
            "weighted avg       1.00      0.67      0.80         3\n";
        Assert.Equal(expected, metrics.ToReport());
        Assert.False(metrics.MicroIsAccuracy);
    }

    [Fact]
    public void StringLabels_FourDigits_AndConfusionMatrix()
    {
        // sklearn 1.2.1: classification_report(a, b, digits=4) and confusion_matrix(a, b).
        string[] gold = ["cat", "dog", "cat", "bird", "dog", "dog", "cat"];
        string[] predicted = ["cat", "cat", "cat", "dog", "dog", "bird", "bird"];
        var metrics = ClassificationMetrics.Compute(gold, predicted);
        Assert.Equal(["bird", "cat", "dog"], metrics.Labels);
        Assert.Equal(new[,] { { 0, 0, 1 }, { 1, 2, 0 }, { 1, 1, 1 } }, metrics.ConfusionMatrix);
        const string expected =
            "              precision    recall  f1-score   support\n\n" +
            "        bird     0.0000    0.0000    0.0000         1\n" +
            "         cat     0.6667    0.6667    0.6667         3\n" +
            "         dog     0.5000    0.3333    0.4000         3\n\n" +
            "    accuracy                         0.4286         7\n" +
            "   macro avg     0.3889    0.3333    0.3556         7\n" +
            "weighted avg     0.5000    0.4286    0.4571         7\n";
        Assert.Equal(expected, metrics.ToReport(digits: 4));
        Assert.Equal(0.4571428571428572, metrics.Weighted.F1, 1e-12);
        Assert.Equal(metrics.Accuracy, metrics.Micro.F1, 1e-12);
    }

    [Fact]
    public void MismatchedLengths_AreAClearError()
    {
        var error = Assert.Throws<ArgumentException>(() => ClassificationMetrics.Compute([1, 2], [1]));
        Assert.Contains("2 gold labels but 1 predictions", error.Message);
    }

    [Fact]
    public void ConfusionMatrixPlot_WritesAPng()
    {
        var metrics = ClassificationMetrics.Compute(["a", "b", "b", "c"], ["a", "b", "c", "c"]);
        string path = Path.Combine(Path.GetTempPath(), $"sharptune-cm-{Guid.NewGuid():N}", "cm.png");
        try
        {
            metrics.SaveConfusionMatrixPlot(path);
            var bytes = File.ReadAllBytes(path);
            Assert.True(bytes.Length > 1000);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public void StringLabels_SortByCodePointAsNumpy_NotByCulture()
    {
        // sklearn 1.2.1: np.unique(["b","B","a","C","b","B","B","a","b","C"]) -> ['B', 'C', 'a', 'b'];
        // confusion_matrix(["b","B","a","C","b"], ["B","B","a","b","C"]).tolist()
        //   -> [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [1, 1, 0, 0]]
        var metrics = ClassificationMetrics.Compute(["b", "B", "a", "C", "b"], ["B", "B", "a", "b", "C"]);
        Assert.Equal(["B", "C", "a", "b"], metrics.Labels);
        Assert.Equal(new[,] { { 1, 0, 0, 0 }, { 0, 0, 0, 1 }, { 0, 0, 1, 0 }, { 1, 1, 0, 0 } }, metrics.ConfusionMatrix);
    }

    [Fact]
    public void LabelsBeyondTheClassesSeen_ShowMicroAverage()
    {
        // sklearn 1.2.1 shows the accuracy row only when set(labels) == set(unique_labels(y_true, y_pred)):
        // classification_report(["pos","pos"], ["pos","neg"], labels=["neg","pos","maybe"], zero_division=0)
        var metrics = ClassificationMetrics.Compute(["pos", "pos"], ["pos", "neg"], labels: ["neg", "pos", "maybe"]);
        const string expected =
            "              precision    recall  f1-score   support\n\n" +
            "         neg       0.00      0.00      0.00         0\n" +
            "         pos       1.00      0.50      0.67         2\n" +
            "       maybe       0.00      0.00      0.00         0\n\n" +
            "   micro avg       0.50      0.50      0.50         2\n" +
            "   macro avg       0.33      0.17      0.22         2\n" +
            "weighted avg       1.00      0.50      0.67         2\n";
        Assert.Equal(expected, metrics.ToReport());
        Assert.False(metrics.MicroIsAccuracy);
    }

    [Fact]
    public void NoCorrectPrediction_ReportPrintsSupportAsFloat()
    {
        // sklearn 1.2.1: classification_report(["C","B"], ["b","b"], zero_division=0); with no true positive at all
        // its counts start from float zeros and every support prints as "1.0".
        var metrics = ClassificationMetrics.Compute(["C", "B"], ["b", "b"]);
        const string expected =
            "              precision    recall  f1-score   support\n\n" +
            "           B       0.00      0.00      0.00       1.0\n" +
            "           C       0.00      0.00      0.00       1.0\n" +
            "           b       0.00      0.00      0.00       0.0\n\n" +
            "    accuracy                           0.00       2.0\n" +
            "   macro avg       0.00      0.00      0.00       2.0\n" +
            "weighted avg       0.00      0.00      0.00       2.0\n";
        Assert.Equal(expected, metrics.ToReport());
    }

    [Fact]
    public void Report_PadsLabelsByCodePoints()
    {
        // sklearn 1.2.1: classification_report(["😀","x"], ["😀","x"]); Python pads "😀" as one character.
        var metrics = ClassificationMetrics.Compute(["😀", "x"], ["😀", "x"]);
        const string expected =
            "              precision    recall  f1-score   support\n\n" +
            "           x       1.00      1.00      1.00         1\n" +
            "           😀       1.00      1.00      1.00         1\n\n" +
            "    accuracy                           1.00         2\n" +
            "   macro avg       1.00      1.00      1.00         2\n" +
            "weighted avg       1.00      1.00      1.00         2\n";
        Assert.Equal(expected, metrics.ToReport());
    }
}
