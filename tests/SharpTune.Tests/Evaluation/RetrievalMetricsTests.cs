using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

/// <summary>
/// Retrieval metrics on rankings worked by hand with sentence-transformers' InformationRetrievalEvaluator formulas
/// (huggingface/sentence-transformers@76cfd34c51d7f7523232581e325442ec53233e8c, evaluation/InformationRetrievalEvaluator.py).
/// </summary>
public sealed class RetrievalMetricsTests
{
    private static readonly RetrievalCutoffs AtOneAndThree = new()
    {
        AccuracyAtK = [1, 3], PrecisionRecallAtK = [1, 3], MrrAtK = [3], NdcgAtK = [3], MapAtK = [3],
    };

    [Fact]
    public void Every_metric_of_three_hand_worked_rankings()
    {
        // Query A: hits at ranks 2 and 4 of {0, 1}; B: rank 2 of {4}; C: ranks 1 and 3 of {1, 2}.
        IReadOnlyList<int>[] rankings = [[3, 0, 4, 1, 2], [2, 4, 1, 0, 3], [1, 0, 2, 3, 4]];
        IReadOnlySet<int>[] relevant = [new HashSet<int> { 0, 1 }, new HashSet<int> { 4 }, new HashSet<int> { 1, 2 }];

        var metrics = RetrievalMetrics.Compute(rankings, relevant, AtOneAndThree);

        var log3 = 1 / Math.Log2(3);   // the gain at rank 2
        var expected = new Dictionary<string, double>
        {
            ["cosine_accuracy@1"] = 1.0 / 3,                       // only C's first document is relevant
            ["cosine_accuracy@3"] = 1,
            ["cosine_precision@1"] = 1.0 / 3,
            ["cosine_precision@3"] = (1.0 / 3 + 1.0 / 3 + 2.0 / 3) / 3,
            ["cosine_recall@1"] = (0 + 0 + 0.5) / 3,
            ["cosine_recall@3"] = (0.5 + 1 + 1) / 3,
            ["cosine_mrr@3"] = (0.5 + 0.5 + 1) / 3,
            // DCG over the ideal DCG of the query's relevant count: A log3 / (1 + log3), B log3 / 1, C (1 + 1/2) / (1 + log3).
            ["cosine_ndcg@3"] = (log3 / (1 + log3) + log3 + 1.5 / (1 + log3)) / 3,
            // Σ precision at each hit within k over min(k, relevant): A (1/2)/2, B (1/2)/1, C (1 + 2/3)/2.
            ["cosine_map@3"] = (0.25 + 0.5 + (1 + 2.0 / 3) / 2) / 3,
        };
        Assert.Equal(expected.Keys.Order(), metrics.Keys.Order());
        foreach (var (name, value) in expected) Assert.Equal(value, metrics[name], 12);
    }

    [Fact]
    public void The_defaults_are_the_evaluators_and_ndcg_at_10_is_the_primary_metric()
    {
        var metrics = RetrievalMetrics.Compute([[0, 1]], [new HashSet<int> { 1 }]);
        Assert.Equal(
            ["cosine_accuracy@1", "cosine_accuracy@10", "cosine_accuracy@3", "cosine_accuracy@5", "cosine_map@100", "cosine_mrr@10", "cosine_ndcg@10",
             "cosine_precision@1", "cosine_precision@10", "cosine_precision@3", "cosine_precision@5",
             "cosine_recall@1", "cosine_recall@10", "cosine_recall@3", "cosine_recall@5"],
            metrics.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("cosine_ndcg@10", RetrievalMetrics.PrimaryMetric());
        Assert.Equal(0.1, metrics["cosine_precision@10"], 12);   // one hit over k, though the corpus has two documents
        Assert.Equal(1 / Math.Log2(3), metrics["cosine_ndcg@10"], 12);
    }

    [Fact]
    public void Rankings_follow_cosine_similarity_and_keep_corpus_order_on_ties()
    {
        float[][] corpus = [[1, 0], [0, 1], [2, 0], [1, 1], [-1, 0]];
        var ranked = RetrievalMetrics.RankByCosine([[3, 0], [0, 0.5f]], corpus, 4);
        Assert.Equal([0, 2, 3, 1], ranked[0]);   // 0 and 2 tie at cosine 1 (lengths do not matter); the opposite vector is cut at k = 4
        Assert.Equal([1, 3, 0, 2], ranked[1]);
    }

    [Fact]
    public void Pairs_become_distinct_queries_and_documents_with_each_querys_positives_relevant()
    {
        var set = RetrievalSet.FromPairs([("q1", "d1"), ("q2", "d2"), ("q1", "d3"), ("q3", "d2")]);
        Assert.Equal(["q1", "q2", "q3"], set.Queries);
        Assert.Equal(["d1", "d2", "d3"], set.Corpus);
        Assert.Equal([0, 2], set.Relevant[0].Order());
        Assert.Equal([1], set.Relevant[1]);
        Assert.Equal([1], set.Relevant[2]);
    }

    [Fact]
    public void A_query_without_relevant_documents_is_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => RetrievalMetrics.Compute([[0]], [new HashSet<int>()]));
        Assert.Contains("at least one relevant", error.Message);
    }
}
