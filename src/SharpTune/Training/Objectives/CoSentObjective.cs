using SharpTune.Embeddings;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// An embedding model over scored pairs with <see cref="CoSentLoss"/>: both texts embedded with the model's pooling (with
/// gradients), the loss over the micro-batch's pairs. One loss unit per micro-batch, so accumulation averages the
/// micro-batches' losses. Logs ranking_accuracy: the fraction of the micro-batch's ordered pairs (score_i &lt; score_j)
/// whose cosines are ordered the same way on the full embeddings (1 when no two scores differ). With
/// <paramref name="matryoshka"/> the loss is <see cref="MatryoshkaLoss"/>'s weighted sum of CoSENT on the cut embeddings.
/// </summary>
internal sealed class CoSentObjective(SentenceTransformerConfig pooling, double scale, MatryoshkaSettings? matryoshka = null) : ITrainingObjective
{
    public string AccuracyMetric => "ranking_accuracy";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var pairs = batch as ScoredPairBatch ?? throw new ArgumentException("the CoSENT objective needs scored-pair batches", nameof(batch));
        var p = pairs.Pairs;
        var embeddings = TextEmbedder.Encode(model, pairs.InputIds, pairs.Context, pairs.Rows, pooling);   // (2P, D)
        var scores = CoSentLoss.Scores(embeddings.narrow(0, 0, p), embeddings.narrow(0, p, p), scale);
        var loss = matryoshka is null ? CoSentLoss.Compute(scores, pairs.Scores)
            : MatryoshkaLoss.Compute(embeddings, matryoshka.Dims, matryoshka.Weights,
                e => CoSentLoss.Compute(CoSentLoss.Scores(e.narrow(0, 0, p), e.narrow(0, p, p), scale), pairs.Scores));
        using var noGrad = no_grad();
        var ordered = pairs.Scores.unsqueeze(1).lt(pairs.Scores.unsqueeze(0));                // label_i < label_j
        var agreeing = ordered.logical_and(scores.detach().unsqueeze(1).lt(scores.detach().unsqueeze(0))).sum().to(ScalarType.Float64);
        var count = ordered.sum().to(ScalarType.Float64);
        var accuracy = count.item<double>() == 0 ? ones(1, ScalarType.Float64).squeeze() : agreeing / count;
        return new ObjectiveOutput(loss, accuracy);
    }
}
