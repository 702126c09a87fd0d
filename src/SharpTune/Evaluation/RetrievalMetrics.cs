namespace SharpTune.Evaluation;

/// <summary>The cut-offs each retrieval metric is computed at (sentence-transformers' InformationRetrievalEvaluator defaults).</summary>
public sealed record RetrievalCutoffs
{
    public IReadOnlyList<int> AccuracyAtK { get; init; } = [1, 3, 5, 10];
    public IReadOnlyList<int> PrecisionRecallAtK { get; init; } = [1, 3, 5, 10];
    public IReadOnlyList<int> MrrAtK { get; init; } = [10];
    public IReadOnlyList<int> NdcgAtK { get; init; } = [10];
    public IReadOnlyList<int> MapAtK { get; init; } = [100];

    /// <summary>The largest cut-off: how many ranked documents each query needs.</summary>
    public int MaxK => new[] { AccuracyAtK, PrecisionRecallAtK, MrrAtK, NdcgAtK, MapAtK }.SelectMany(k => k).Max();
}

/// <summary>
/// Retrieval metrics as sentence-transformers' InformationRetrievalEvaluator computes them
/// (huggingface/sentence-transformers@76cfd34c51d7f7523232581e325442ec53233e8c,
/// sentence_transformers/evaluation/InformationRetrievalEvaluator.py, <c>compute_metrics</c> and <c>compute_dcg_at_k</c>),
/// per query then averaged over queries: accuracy@k (a relevant document in the top k), precision@k (relevant in the top
/// k over k), recall@k (over the query's relevant count), MRR@k (1 / rank of the first relevant), NDCG@k (binary gains,
/// DCG = Σ rel_i / log2(i + 2), ideal = all relevant first), MAP@k (Σ precision at each relevant hit over
/// min(k, relevant count)). Keys are the evaluator's: <c>cosine_accuracy@1</c>, <c>cosine_ndcg@10</c>, ….
/// </summary>
public static class RetrievalMetrics
{
    /// <summary>The similarity the rankings were made with, as the keys name it.</summary>
    public const string ScoreFunction = "cosine";

    /// <summary>The metric name sentence-transformers reports as its primary one (ndcg at the largest cut-off).</summary>
    public static string PrimaryMetric(RetrievalCutoffs? cutoffs = null) => $"{ScoreFunction}_ndcg@{(cutoffs ?? new()).NdcgAtK.Max()}";

    /// <param name="rankings">Per query, corpus indices in descending score order (at least the largest cut-off, or the whole corpus).</param>
    /// <param name="relevant">Per query, the relevant corpus indices (at least one each).</param>
    public static IReadOnlyDictionary<string, double> Compute(IReadOnlyList<IReadOnlyList<int>> rankings, IReadOnlyList<IReadOnlySet<int>> relevant,
        RetrievalCutoffs? cutoffs = null)
    {
        cutoffs ??= new RetrievalCutoffs();
        if (rankings.Count != relevant.Count)
            throw new ArgumentException($"{rankings.Count} rankings for {relevant.Count} queries' relevant sets", nameof(relevant));
        if (rankings.Count == 0) throw new ArgumentException("no queries to evaluate", nameof(rankings));
        if (relevant.FirstOrDefault(r => r.Count == 0) is not null)
            throw new ArgumentException("every query needs at least one relevant document (the evaluator skips queries without)", nameof(relevant));
        var sums = new Dictionary<string, double>();
        void Add(string name, int k, double value) => sums[$"{ScoreFunction}_{name}@{k}"] = sums.GetValueOrDefault($"{ScoreFunction}_{name}@{k}") + value;
        for (var q = 0; q < rankings.Count; q++)
        {
            var hits = rankings[q].Select(relevant[q].Contains).ToArray();   // hits[i]: the document at rank i + 1 is relevant
            int Correct(int k) => hits.Take(k).Count(h => h);
            foreach (var k in cutoffs.AccuracyAtK) Add("accuracy", k, Correct(k) > 0 ? 1 : 0);
            foreach (var k in cutoffs.PrecisionRecallAtK)
            {
                Add("precision", k, (double)Correct(k) / k);
                Add("recall", k, (double)Correct(k) / relevant[q].Count);
            }
            foreach (var k in cutoffs.MrrAtK)
            {
                var first = Array.IndexOf(hits.Take(k).ToArray(), true);
                Add("mrr", k, first < 0 ? 0 : 1.0 / (first + 1));
            }
            foreach (var k in cutoffs.NdcgAtK)
                Add("ndcg", k, Dcg(hits.Take(k).Select(h => h ? 1.0 : 0.0).ToArray(), k) / Dcg(Enumerable.Repeat(1.0, relevant[q].Count).ToArray(), k));
            foreach (var k in cutoffs.MapAtK)
            {
                double found = 0, precisions = 0;
                for (var i = 0; i < Math.Min(k, hits.Length); i++)
                    if (hits[i]) precisions += ++found / (i + 1);
                Add("map", k, precisions / Math.Min(k, relevant[q].Count));
            }
        }
        return sums.ToDictionary(kv => kv.Key, kv => kv.Value / rankings.Count);
    }

    private static double Dcg(double[] relevances, int k)
    {
        double dcg = 0;
        for (var i = 0; i < Math.Min(relevances.Length, k); i++) dcg += relevances[i] / Math.Log2(i + 2);
        return dcg;
    }

    /// <summary>
    /// Per query, the top <paramref name="count"/> corpus indices by cosine similarity, highest first; equal scores keep
    /// corpus order (the evaluator's torch.topk leaves ties unspecified).
    /// </summary>
    public static int[][] RankByCosine(IReadOnlyList<float[]> queries, IReadOnlyList<float[]> corpus, int count)
    {
        var corpusNorms = corpus.Select(Norm).ToArray();
        return queries.Select(query =>
        {
            var norm = Norm(query);
            var scores = corpus.Select((doc, i) => Dot(query, doc) / (norm * corpusNorms[i])).ToArray();
            return Enumerable.Range(0, corpus.Count).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(count).ToArray();
        }).ToArray();
    }

    // util.cos_sim divides each vector by max(‖v‖, 1e-12).
    private static double Norm(float[] v) => Math.Max(Math.Sqrt(Dot(v, v)), 1e-12);

    private static double Dot(float[] a, float[] b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"vectors of {a.Length} and {b.Length} dimensions cannot be compared");
        double sum = 0;
        for (var i = 0; i < a.Length; i++) sum += (double)a[i] * b[i];
        return sum;
    }
}
