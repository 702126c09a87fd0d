using SharpTune.Embeddings;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// sentence-transformers' MatryoshkaLoss with its default n_dims_per_step = -1 (every dimension at every step;
/// UKPLab/sentence-transformers@85ec64559f4414aa536eca4bf53538291e0a333f, sentence_transformers/losses/MatryoshkaLoss.py,
/// <c>MatryoshkaLoss.forward</c> and <c>shrink</c>): the pooled embeddings are cut to each of the dimensions, largest first,
/// each cut L2-normalised (<c>shrink</c>: <c>F.normalize(tensor[..., :dim])</c>), the inner loss — MultipleNegativesRankingLoss
/// or CoSENTLoss, with its own cosine similarity and scale — taken on them, and the results summed with their weights
/// (1 each unless given): loss = Σ_k w_k · inner(normalize(e[:, :d_k])). A weighted sum, not a mean.
/// </summary>
public static class MatryoshkaLoss
{
    /// <summary>
    /// (B, <paramref name="dim"/>) float32: the first <paramref name="dim"/> components of each row of (B, D), scaled to
    /// unit length (sentence-transformers' <c>shrink</c>), in float32 whatever the input's dtype, as autocast runs
    /// <c>F.normalize</c> there (the objectives' pooled embeddings are float32 already).
    /// </summary>
    public static Tensor Shrink(Tensor embeddings, int dim)
    {
        if (dim < 1 || dim > embeddings.shape[^1])
            throw new ArgumentOutOfRangeException(nameof(dim), dim, $"a Matryoshka dimension must be between 1 and the embedding's {embeddings.shape[^1]}");
        using var scope = NewDisposeScope();
        return EmbeddingPooling.Normalize(embeddings.narrow(-1, 0, dim).to(ScalarType.Float32)).MoveToOuterDisposeScope();
    }

    /// <summary>Σ_k weights[k] · <paramref name="inner"/>(<see cref="Shrink"/>(embeddings, dims[k])); gradients flow through every term.</summary>
    public static Tensor Compute(Tensor embeddings, IReadOnlyList<int> dims, IReadOnlyList<double> weights, Func<Tensor, Tensor> inner)
    {
        if (dims.Count == 0 || dims.Count != weights.Count)
            throw new ArgumentException($"MatryoshkaLoss needs one weight per dimension, found {dims.Count} dimensions and {weights.Count} weights");
        using var scope = NewDisposeScope();
        Tensor? total = null;
        for (var k = 0; k < dims.Count; k++)
        {
            var term = inner(Shrink(embeddings, dims[k])) * weights[k];
            total = total is null ? term : total + term;
        }
        return total!.MoveToOuterDisposeScope();
    }
}
