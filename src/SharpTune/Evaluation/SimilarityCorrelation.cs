using SharpTune.Embeddings;

namespace SharpTune.Evaluation;

/// <summary>
/// How well an embedding model's cosine similarities follow gold similarity scores, as sentence-transformers'
/// EmbeddingSimilarityEvaluator reports it (huggingface/sentence-transformers@ab43a88338506a54fe52b61fda38f5ed7e806460,
/// evaluation/EmbeddingSimilarityEvaluator.py): <c>pearson_cosine</c> (scipy's pearsonr) and <c>spearman_cosine</c>
/// (scipy's spearmanr: Pearson of the ranks, ties given their average rank) between the gold scores and the pairs'
/// cosine similarities. A constant input has no correlation: NaN, as scipy returns.
/// </summary>
public static class SimilarityCorrelation
{
    /// <summary>Pearson's r of two equally long series.</summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count != y.Count) throw new ArgumentException($"series of {x.Count} and {y.Count} values cannot be correlated");
        if (x.Count < 2) throw new ArgumentException("a correlation needs at least two values");
        var (mx, my) = (x.Average(), y.Average());
        double sxy = 0, sxx = 0, syy = 0;
        for (var i = 0; i < x.Count; i++)
        {
            sxy += (x[i] - mx) * (y[i] - my);
            sxx += (x[i] - mx) * (x[i] - mx);
            syy += (y[i] - my) * (y[i] - my);
        }
        return sxx == 0 || syy == 0 ? double.NaN : sxy / Math.Sqrt(sxx * syy);
    }

    /// <summary>Spearman's ρ: <see cref="Pearson"/> of the average ranks.</summary>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y) => Pearson(Ranks(x), Ranks(y));

    /// <summary>1-based ranks, tied values sharing their average rank (scipy's rankdata, method "average").</summary>
    public static double[] Ranks(IReadOnlyList<double> values)
    {
        var order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (var start = 0; start < order.Length;)
        {
            var end = start;
            while (end + 1 < order.Length && values[order[end + 1]] == values[order[start]]) end++;
            for (var k = start; k <= end; k++) ranks[order[k]] = (start + end) / 2.0 + 1;
            start = end + 1;
        }
        return ranks;
    }

    /// <summary>Embeds both sides of the pairs and correlates their cosine similarities with <paramref name="scores"/>.</summary>
    public static IReadOnlyDictionary<string, double> Evaluate(TextEmbedder embedder, IReadOnlyList<string> first, IReadOnlyList<string> second,
        IReadOnlyList<double> scores, CancellationToken cancellationToken = default)
    {
        var u = embedder.Embed(first, cancellationToken: cancellationToken).Vectors;
        var v = embedder.Embed(second, cancellationToken: cancellationToken).Vectors;
        var cosines = u.Select((a, i) => Cosine(a, v[i])).ToArray();
        return new Dictionary<string, double>
        {
            [$"pearson_{RetrievalMetrics.ScoreFunction}"] = Pearson(scores, cosines),
            [$"spearman_{RetrievalMetrics.ScoreFunction}"] = Spearman(scores, cosines),
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
