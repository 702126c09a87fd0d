using SharpTune.Classification;
using SharpTune.Data;

namespace SharpTune.Evaluation;

/// <summary>One query of a reranking evaluation: the documents relevant to it and those that are not.</summary>
public sealed record RerankingSample(string Query, IReadOnlyList<string> Positives, IReadOnlyList<string> Negatives);

/// <summary>
/// sentence-transformers' CrossEncoderRerankingEvaluator (UKPLab/sentence-transformers@0f75f473d209c41a1254b44b29a86705ac60a2ca,
/// sentence_transformers/cross_encoder/evaluation/reranking.py, samples with <c>positive</c> and <c>negative</c>): each
/// query's positives then negatives scored with the query, and per query MRR@k (1 / rank of the first relevant document
/// within the top k, else 0), NDCG@k (scikit-learn's ndcg_score with binary gains) and AP (scikit-learn's
/// average_precision_score), each averaged over the queries; a query without positives counts 0 for all three, as there.
/// Equal scores are handled as there (<see cref="TiedScoreRanking"/>): AP and NDCG treat a tied group as one threshold,
/// so a model that scores everything alike reads as chance rather than as a perfect ranking of the positives listed first.
/// Keys: <c>map</c>, <c>mrr@10</c>, <c>ndcg@10</c>; the primary metric is <c>ndcg@10</c>.
/// </summary>
public static class RerankingEvaluator
{
    /// <summary>The metric sentence-transformers reports as primary (NDCG at the cut-off).</summary>
    public static string PrimaryMetric(int atK = 10) => $"ndcg@{atK}";

    /// <summary>The metrics from each query's relevance flags and scores (in the same document order).</summary>
    public static IReadOnlyDictionary<string, double> Compute(IReadOnlyList<(IReadOnlyList<bool> Relevant, IReadOnlyList<float> Scores)> queries, int atK = 10)
    {
        if (queries.Count == 0) throw new ArgumentException("no queries to evaluate", nameof(queries));
        if (atK < 1) throw new ArgumentOutOfRangeException(nameof(atK), atK, "the cut-off must be at least 1");
        double mrr = 0, ndcg = 0, ap = 0;
        foreach (var (relevant, scores) in queries)
        {
            if (relevant.Count != scores.Count)
                throw new ArgumentException($"{relevant.Count} relevance flags for {scores.Count} scores", nameof(queries));
            if (!relevant.Contains(true)) continue;
            mrr += TiedScoreRanking.ReciprocalRank(relevant, scores, atK);
            ndcg += TiedScoreRanking.Ndcg(relevant, scores, atK);
            ap += TiedScoreRanking.AveragePrecision(relevant, scores);
        }
        return new Dictionary<string, double>
        {
            ["map"] = ap / queries.Count,
            [$"mrr@{atK}"] = mrr / queries.Count,
            [$"ndcg@{atK}"] = ndcg / queries.Count,
        };
    }

    /// <summary>Scores each sample's positives then negatives with <paramref name="reranker"/> and computes the metrics.</summary>
    public static IReadOnlyDictionary<string, double> Evaluate(Reranker reranker, IReadOnlyList<RerankingSample> samples, int atK = 10, int batchSize = 8)
    {
        var queries = samples.Select(s =>
        {
            IReadOnlyList<bool> relevant = [.. s.Positives.Select(_ => true), .. s.Negatives.Select(_ => false)];
            IReadOnlyList<float> scores = s.Positives.Count == 0 ? [.. relevant.Select(_ => 0f)]   // counted as 0 without scoring, as there
                : reranker.Score(s.Query, [.. s.Positives, .. s.Negatives], batchSize);
            return (relevant, scores);
        }).ToList();
        return Compute(queries, atK);
    }

    /// <summary>
    /// The samples reranking rows make: rows grouped by query (in first-seen order), documents with a relevance above
    /// 0.5 positives and the rest negatives, each document once per query.
    /// </summary>
    /// <exception cref="DataFormatException">A document is listed twice for a query, once relevant (above 0.5) and once
    /// not: the message names both rows (sentence-transformers would score it on both sides, so neither reading is the data's).</exception>
    public static IReadOnlyList<RerankingSample> FromExamples(IEnumerable<RerankingExample> examples) =>
        examples.SelectMany(e => e.Candidates.Select(c => (e.Query, c, e)))
            .GroupBy(x => x.Query, StringComparer.Ordinal)
            .Select(g =>
            {
                var documents = new List<RerankingCandidate>();
                var seen = new Dictionary<string, (bool Relevant, RerankingExample Row)>(StringComparer.Ordinal);
                foreach (var (_, candidate, row) in g)
                {
                    var relevant = candidate.Label > 0.5;
                    if (!seen.TryGetValue(candidate.Document, out var first))
                    {
                        seen[candidate.Document] = (relevant, row);
                        documents.Add(candidate);
                    }
                    else if (first.Relevant != relevant)
                        throw new DataFormatException(row.SourceFile, row.LineNumber, candidate.Field, "conflicting_label",
                            $"the query's document is {(relevant ? "relevant" : "not relevant")} here but {(first.Relevant ? "relevant" : "not relevant")} at {first.Row.SourceFile}:{first.Row.LineNumber}");
                }
                return new RerankingSample(g.Key, [.. documents.Where(c => c.Label > 0.5).Select(c => c.Document)],
                    [.. documents.Where(c => c.Label <= 0.5).Select(c => c.Document)]);
            }).ToList();
}
