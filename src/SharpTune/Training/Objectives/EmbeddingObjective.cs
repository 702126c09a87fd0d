using SharpTune.Embeddings;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// An embedding model over embedding batches, as sentence-transformers' trainer runs MultipleNegativesRankingLoss: the
/// texts are embedded with the model's own pooling and normalisation (<see cref="TextEmbedder"/>'s forward, with
/// gradients), and <see cref="MultipleNegativesRankingLoss"/> is taken over the micro-batch — its other positives and
/// every hard negative are each anchor's negatives, so gradient accumulation does not add in-batch negatives. The mean is
/// multiplied by the anchors, so the trainer's division by the step's anchors weights micro-batches by their size.
/// Logs accuracy: the fraction of anchors whose own positive scores highest.
/// </summary>
internal sealed class EmbeddingObjective(SentenceTransformerConfig pooling, double scale) : ITrainingObjective
{
    public string AccuracyMetric => "accuracy";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var rows = batch as EmbeddingBatch ?? throw new ArgumentException("the embedding objective needs embedding batches", nameof(batch));
        var p = rows.Anchors;
        var embeddings = TextEmbedder.Encode(model, rows.InputIds, rows.Context, rows.Rows, pooling);   // (B, D)
        var scores = MultipleNegativesRankingLoss.Scores(embeddings.narrow(0, 0, p), embeddings.narrow(0, p, embeddings.shape[0] - p), scale);
        var lossSum = MultipleNegativesRankingLoss.Compute(scores) * p;
        using var noGrad = no_grad();
        var correct = scores.detach().argmax(1).eq(arange(p, ScalarType.Int64, scores.device)).sum();
        return new ObjectiveOutput(lossSum, correct);
    }
}
