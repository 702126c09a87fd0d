using SharpTune.Embeddings;

namespace SharpTune.Evaluation;

/// <summary>
/// How well an embedding model's cosine similarities follow gold similarity scores, as sentence-transformers'
/// EmbeddingSimilarityEvaluator reports it (huggingface/sentence-transformers@ab43a88338506a54fe52b61fda38f5ed7e806460,
/// evaluation/EmbeddingSimilarityEvaluator.py): <c>pearson_cosine</c> (scipy's pearsonr) and <c>spearman_cosine</c>
/// (scipy's spearmanr: Pearson of the ranks, ties given their average rank) between the gold scores and the pairs'
/// cosine similarities (<see cref="Correlation"/>). A constant input has no correlation: NaN, as scipy returns.
/// </summary>
public static class SimilarityCorrelation
{
    /// <summary>
    /// Embeds both sides of the pairs (with <paramref name="options"/>, e.g. a Matryoshka <see cref="EmbeddingRequestOptions.Dimensions"/>
    /// as the evaluator's <c>truncate_dim</c>) and correlates their cosine similarities with <paramref name="scores"/>.
    /// </summary>
    public static IReadOnlyDictionary<string, double> Evaluate(TextEmbedder embedder, IReadOnlyList<string> first, IReadOnlyList<string> second,
        IReadOnlyList<double> scores, EmbeddingRequestOptions? options = null, CancellationToken cancellationToken = default)
    {
        return Score(embedder.Embed(first, options, cancellationToken).Vectors, embedder.Embed(second, options, cancellationToken).Vectors, scores);
    }

    /// <summary>The correlations of pairs already embedded (<paramref name="u"/>[i] with <paramref name="v"/>[i]) with <paramref name="scores"/>.</summary>
    internal static IReadOnlyDictionary<string, double> Score(IReadOnlyList<float[]> u, IReadOnlyList<float[]> v, IReadOnlyList<double> scores)
    {
        var cosines = u.Select((a, i) => Cosine(a, v[i])).ToArray();
        return new Dictionary<string, double>
        {
            [$"pearson_{RetrievalMetrics.ScoreFunction}"] = Correlation.Pearson(scores, cosines),
            [$"spearman_{RetrievalMetrics.ScoreFunction}"] = Correlation.Spearman(scores, cosines),
        };
    }

    private static double Cosine(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }
        return dot / (Math.Max(Math.Sqrt(na), 1e-12) * Math.Max(Math.Sqrt(nb), 1e-12));
    }
}
