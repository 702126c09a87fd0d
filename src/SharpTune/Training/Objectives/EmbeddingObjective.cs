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
/// With <paramref name="matryoshka"/> the loss is <see cref="MatryoshkaLoss"/>'s weighted sum of MNRL on the cut embeddings.
/// Logs accuracy: the fraction of anchors whose own positive scores highest on the full embeddings.
/// </summary>
internal sealed class EmbeddingObjective(SentenceTransformerConfig pooling, double scale, MatryoshkaSettings? matryoshka = null) : ITrainingObjective
{
    public string AccuracyMetric => "accuracy";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var rows = batch as EmbeddingBatch ?? throw new ArgumentException("the embedding objective needs embedding batches", nameof(batch));
        var embeddings = TextEmbedder.Encode(model, rows.InputIds, rows.Context, rows.Rows, pooling);   // (B, D)
        return Loss(embeddings, rows.Anchors, scale, matryoshka);
    }

    /// <summary>
    /// The summed loss (mean × anchors) and the correct count from a micro-batch's embeddings (B, D): rows 0..P-1 the
    /// anchors, the rest their candidates.
    /// </summary>
    internal static ObjectiveOutput Loss(Tensor embeddings, int anchors, double scale, MatryoshkaSettings? matryoshka)
    {
        var p = anchors;
        Tensor Scores(Tensor e) => MultipleNegativesRankingLoss.Scores(e.narrow(0, 0, p), e.narrow(0, p, e.shape[0] - p), scale);   // (P, N)
        var scores = Scores(embeddings);
        var loss = matryoshka is null ? MultipleNegativesRankingLoss.Compute(scores)
            : MatryoshkaLoss.Compute(embeddings, matryoshka.Dims, matryoshka.Weights, e => MultipleNegativesRankingLoss.Compute(Scores(e)));
        var lossSum = loss * p;
        using var noGrad = no_grad();
        var correct = scores.detach().argmax(1).eq(arange(p, ScalarType.Int64, scores.device)).sum();
        return new ObjectiveOutput(lossSum, correct);
    }
}
