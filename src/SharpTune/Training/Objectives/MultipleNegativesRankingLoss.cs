using SharpTune.Embeddings;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training.Objectives;

/// <summary>
/// sentence-transformers' MultipleNegativesRankingLoss with its defaults (huggingface/sentence-transformers@6d655a10a4280a237f63eab1ff4119ccb41ce553,
/// sentence_transformers/losses/MultipleNegativesRankingLoss.py, <c>compute_loss_from_embeddings</c> with directions
/// ("query_to_doc",) and partition_mode "joint"): each anchor's cosine similarity to every candidate — every positive of
/// the batch, then every hard negative — times <c>scale</c>, and cross-entropy against its own positive:
/// loss = mean over anchors i of −(s·cos(a_i, p_i) − log Σ_j exp(s·cos(a_i, c_j))).
/// </summary>
public static class MultipleNegativesRankingLoss
{
    /// <summary>sentence-transformers' default scale (a temperature of 0.05).</summary>
    public const double DefaultScale = 20.0;

    /// <summary>
    /// (P, N) scaled cosine similarities, float32: <paramref name="anchors"/> (P, D) against <paramref name="candidates"/>
    /// (N ≥ P, D) whose first P rows are the anchors' positives in order. cos is util.cos_sim: each row divided by
    /// max(‖row‖, 1e-12), then a matrix product.
    /// </summary>
    public static Tensor Scores(Tensor anchors, Tensor candidates, double scale)
    {
        using var scope = NewDisposeScope();
        var a = EmbeddingPooling.Normalize(anchors.to(ScalarType.Float32));
        var c = EmbeddingPooling.Normalize(candidates.to(ScalarType.Float32));
        return (a.matmul(c.t()) * scale).MoveToOuterDisposeScope();   // (P, N)
    }

    /// <summary>The mean loss over the anchors from <see cref="Scores"/>: anchor i's target is column i.</summary>
    public static Tensor Compute(Tensor scores)
    {
        using var scope = NewDisposeScope();
        var targets = arange(scores.shape[0], ScalarType.Int64, scores.device);
        return F.cross_entropy(scores, targets).MoveToOuterDisposeScope();
    }

    /// <summary><see cref="Compute(Tensor)"/> of <see cref="Scores"/>.</summary>
    public static Tensor Compute(Tensor anchors, Tensor candidates, double scale = DefaultScale)
    {
        using var scope = NewDisposeScope();
        return Compute(Scores(anchors, candidates, scale)).MoveToOuterDisposeScope();
    }
}
