using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Tokenization;

namespace SharpTune.Evaluation.Bias;

/// <summary>
/// Group fairness on labelled classification data with a group column: predicts each label by log-likelihood, then
/// reports demographic-parity and equal-opportunity differences of the positive label across groups.
/// </summary>
public static class GroupFairnessAudit
{
    /// <summary>
    /// Audits <paramref name="data"/> (classification format) grouped by <paramref name="groupField"/>;
    /// <paramref name="positiveLabel"/> defaults to "positive" when it is a label, else the first label in sorted order.
    /// </summary>
    public static IReadOnlyList<FairnessReport> Run(CausalLanguageModel model, HfTokenizer tokenizer, EvaluationData data, string groupField,
        string? positiveLabel = null, int batchSize = 8)
    {
        if (data.Format != DatasetFormat.Classification)
            throw new InvalidDataException($"{data.Path}: group fairness needs classification data ({{text, label, {groupField}}}), found {data.Format.ToString().ToLowerInvariant()}");
        var groups = data.Column(groupField);
        var examples = data.Examples.Cast<ClassificationExample>().ToArray();
        var labels = examples.Select(e => e.ClassLabel).Distinct().Order(StringComparer.Ordinal).ToArray();
        var positive = positiveLabel ?? (labels.Contains("positive") ? "positive" : labels[0]);
        if (!labels.Contains(positive))
            throw new ArgumentException($"positive label '{positive}' is not among the data's labels: {string.Join(", ", labels)}");
        var predicted = new LabelScorer(model, tokenizer, batchSize).ScoreAll(examples.Select(e => e.Text).ToArray(), labels).Select(c => c.Best).ToArray();
        var gold = examples.Select(e => e.ClassLabel).ToArray();
        return
        [
            FairnessMetrics.DemographicParityDifference(predicted, groups, positive),
            FairnessMetrics.EqualOpportunityDifference(predicted, gold, groups, positive),
        ];
    }
}
