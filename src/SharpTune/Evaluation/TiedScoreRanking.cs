namespace SharpTune.Evaluation;

/// <summary>
/// Per-query ranking metrics over scores that may tie, as sentence-transformers' CrossEncoderRerankingEvaluator computes
/// them (UKPLab/sentence-transformers@0f75f473d209c41a1254b44b29a86705ac60a2ca,
/// sentence_transformers/cross_encoder/evaluation/reranking.py, <c>compute_metrics</c>): AP by scikit-learn's
/// average_precision_score and NDCG@k by its ndcg_score (scikit-learn/scikit-learn@294090479a3d756f785fc9512a8457f30ccb0ab8,
/// sklearn/metrics/_ranking.py, <c>_binary_clf_curve</c>, <c>average_precision_score</c>, <c>_tie_averaged_dcg</c>), both of
/// which treat a group of equal scores as one threshold, and MRR@k from <c>np.argsort(y_pred)[::-1]</c>.
/// </summary>
internal static class TiedScoreRanking
{
    /// <summary>Distinct scores in descending order, each with how many documents share it and how many of them are relevant.</summary>
    private static (int Count, int Relevant)[] TiedGroups(IReadOnlyList<bool> relevant, IReadOnlyList<float> scores) =>
        Enumerable.Range(0, scores.Count).GroupBy(i => scores[i]).OrderByDescending(g => g.Key)
            .Select(g => (g.Count(), g.Count(i => relevant[i]))).ToArray();

    /// <summary>
    /// average_precision_score: Σ (R_n − R_{n−1}) · P_n over the distinct score thresholds, highest first, where a
    /// threshold admits every document scoring at least it: a tied group adds its relevant share of recall at the
    /// precision of the whole group admitted.
    /// </summary>
    public static double AveragePrecision(IReadOnlyList<bool> relevant, IReadOnlyList<float> scores)
    {
        var totalRelevant = relevant.Count(r => r);
        if (totalRelevant == 0) throw new ArgumentException("average precision needs a relevant document", nameof(relevant));
        double ap = 0;
        int admitted = 0, found = 0;
        foreach (var (count, groupRelevant) in TiedGroups(relevant, scores))
        {
            admitted += count;
            found += groupRelevant;
            ap += (double)groupRelevant / totalRelevant * found / admitted;
        }
        return ap;
    }

    /// <summary>
    /// ndcg_score(k) with binary gains and ties not ignored: a tied group's gain is its mean gain times the sum of the
    /// discounts 1 / log2(rank + 1) of the ranks it spans (0 past k), over the DCG of the relevant documents ranked first.
    /// </summary>
    public static double Ndcg(IReadOnlyList<bool> relevant, IReadOnlyList<float> scores, int k)
    {
        double Discount(int rank) => rank <= k ? 1 / Math.Log2(rank + 1) : 0;
        double dcg = 0;
        var rank = 0;
        foreach (var (count, groupRelevant) in TiedGroups(relevant, scores))
        {
            double discounts = 0;
            for (var i = 0; i < count; i++) discounts += Discount(++rank);
            dcg += (double)groupRelevant / count * discounts;
        }
        var ideal = Enumerable.Range(1, relevant.Count(r => r)).Sum(Discount);
        return ideal == 0 ? 0 : dcg / ideal;
    }

    /// <summary>
    /// 1 / rank of the first relevant document within the top k, else 0, ranked as <c>np.argsort(y_pred)[::-1]</c> does:
    /// ascending sort reversed, so equal scores come latest-first (numpy's argsort keeps ties in order for the short arrays
    /// a query has, where it sorts by insertion; its order among ties is unspecified beyond that).
    /// </summary>
    public static double ReciprocalRank(IReadOnlyList<bool> relevant, IReadOnlyList<float> scores, int k)
    {
        var ranking = Enumerable.Range(0, scores.Count).OrderByDescending(i => scores[i]).ThenByDescending(i => i).Take(k).ToArray();
        var first = Array.FindIndex(ranking, i => relevant[i]);
        return first < 0 ? 0 : 1.0 / (first + 1);
    }
}
