using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// Sequence classification and regression over <see cref="ClassificationBatch"/>es, as transformers' Trainer trains a
/// *ForSequenceClassification model: the head's pooled logits and <see cref="SequenceClassificationLoss"/> (cross-entropy,
/// BCE with logits or MSE by the head's problem type). The loss is summed over rows (a multi-label row's loss is its mean
/// over the labels, as BCEWithLogitsLoss' mean over B · num_labels entries is the mean of those), so the trainer's
/// division by the step's rows makes accumulation exact. Logs accuracy (argmax equals the label; multi-label: every
/// label's sigmoid > 0.5 decision is right, scikit-learn's subset accuracy) for classification, mse for regression.
/// </summary>
public sealed class SequenceClassificationObjective(SequenceClassifier classifier) : ITrainingObjective
{
    private bool Regression => classifier.Labels.EffectiveProblemType == SequenceClassificationConfig.Regression;

    public string AccuracyMetric => Regression ? "mse" : "accuracy";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        if (!ReferenceEquals(model, classifier.Model))
            throw new ArgumentException("the classification objective trains its own classifier's decoder", nameof(model));
        var rows = batch as ClassificationBatch ?? throw new ArgumentException(
            "the classification objective needs classification batches (ClassifierCollator.Classification)", nameof(batch));
        var logits = classifier.Logits(rows.InputIds);                                          // (B, num_labels)
        var count = rows.Labels.shape[0];
        var lossSum = SequenceClassificationLoss.Compute(logits, rows.Labels, classifier.Labels.EffectiveProblemType) * count;
        using var noGrad = no_grad();
        // Regression's "correct" is the summed squared error, so its logged mean is the MSE.
        var correct = Regression
            ? (logits.detach().view(-1).to(ScalarType.Float32) - rows.Labels.to(ScalarType.Float32)).pow(2).sum()
            : classifier.Labels.EffectiveProblemType == SequenceClassificationConfig.MultiLabelClassification
                ? logits.detach().gt(0).eq(rows.Labels.gt(0.5)).all(-1).sum()   // sigmoid(x) > 0.5 ⇔ x > 0
                : logits.detach().argmax(-1).eq(rows.Labels).sum();
        return new ObjectiveOutput(lossSum, correct);
    }
}
