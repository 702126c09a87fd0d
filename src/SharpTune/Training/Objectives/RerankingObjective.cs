using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// A cross-encoder trained as sentence-transformers' CrossEncoderTrainer trains one with BinaryCrossEntropyLoss: each
/// (query, document) pair's logit from the one-output head, <see cref="BinaryCrossEntropyLoss"/> against its relevance.
/// The loss is summed over pairs, so the trainer's division by the step's pairs makes accumulation exact. Logs accuracy:
/// the pairs whose decision (logit above 0, sigmoid above 0.5) matches relevance above 0.5.
/// </summary>
public sealed class RerankingObjective(SequenceClassifier classifier, double? posWeight = null) : ITrainingObjective
{
    public string AccuracyMetric => "accuracy";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        if (!ReferenceEquals(model, classifier.Model))
            throw new ArgumentException("the reranking objective trains its own classifier's decoder", nameof(model));
        var rows = batch as ClassificationBatch ?? throw new ArgumentException(
            "the reranking objective needs classification batches of relevance targets (ClassifierCollator.Classification)", nameof(batch));
        var logits = classifier.Logits(rows.InputIds);                                          // (B, 1)
        var lossSum = BinaryCrossEntropyLoss.PerPair(logits, rows.Labels, posWeight).sum();
        using var noGrad = no_grad();
        var correct = logits.detach().view(-1).gt(0).eq(rows.Labels.view(-1).gt(0.5)).sum();
        return new ObjectiveOutput(lossSum, correct);
    }
}
