using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Evaluation;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

/// <summary>
/// The reranking loss, metrics and rows worked by hand: BinaryCrossEntropyLoss as torch's BCEWithLogitsLoss(pos_weight)
/// defines it, CrossEncoderRerankingEvaluator's MRR@k, NDCG@k and MAP on hand-ranked queries, and the row layouts.
/// </summary>
public class RerankingMetricsTests
{
    [Fact]
    public void Binary_cross_entropy_matches_the_formula_worked_by_hand()
    {
        // −[p·y·ln σ(x) + (1 − y)·ln σ(−x)], with ln σ(0) = −ln 2, −ln σ(−2) = ln(1 + e²) = 2.1269280,
        // −ln σ(1) = ln(1 + e⁻¹) = 0.3132617 and −ln σ(−1) = ln(1 + e) = 1.3132617.
        using var logits = tensor(new float[] { 0, 2, -1 }, [3, 1]);
        using var labels = tensor(new float[] { 1, 0, 0.25f });
        var plain = BinaryCrossEntropyLoss.PerPair(logits, labels).data<float>().ToArray();
        Assert.Equal(0.6931472, plain[0], 5);
        Assert.Equal(2.1269280, plain[1], 5);
        Assert.Equal(0.25 * 1.3132617 + 0.75 * 0.3132617, plain[2], 5);
        var weighted = BinaryCrossEntropyLoss.PerPair(logits, labels, posWeight: 3).data<float>().ToArray();
        Assert.Equal(3 * 0.6931472, weighted[0], 5);
        Assert.Equal(2.1269280, weighted[1], 5);   // a pair of relevance 0 has no positive term to weigh
        Assert.Equal(3 * 0.25 * 1.3132617 + 0.75 * 0.3132617, weighted[2], 5);
    }

    // Query A: positives scored 0.2 and 0.9, negatives 0.5 and 0.1 → ranking pos(0.9), neg, pos(0.2), neg: relevant at 1 and 3.
    // Query B: positive 0.1, negatives 0.3 and 0.2 → relevant at 3. Query C: no positive (counts 0, as the evaluator does).
    private static readonly List<(IReadOnlyList<bool>, IReadOnlyList<float>)> Queries =
    [
        ([true, true, false, false], [0.2f, 0.9f, 0.5f, 0.1f]),
        ([true, false, false], [0.1f, 0.3f, 0.2f]),
        ([false, false], [0.4f, 0.6f]),
    ];

    [Fact]
    public void Metrics_at_ten_follow_the_hand_ranked_queries()
    {
        var metrics = RerankingEvaluator.Compute(Queries);
        // MRR: A 1, B 1/3. AP: A (1/1 + 2/3) / 2, B 1/3. NDCG: A (1 + 1/log2 4) / (1 + 1/log2 3) = 1.5 / 1.6309298, B 1/log2 4 = 0.5.
        Assert.Equal((1 + 1.0 / 3) / 3, metrics["mrr@10"], 6);
        Assert.Equal(((1 + 2.0 / 3) / 2 + 1.0 / 3) / 3, metrics["map"], 6);
        Assert.Equal((1.5 / 1.6309298 + 0.5) / 3, metrics["ndcg@10"], 6);
        Assert.Equal("ndcg@10", RerankingEvaluator.PrimaryMetric());
    }

    [Fact]
    public void A_cut_off_of_two_ignores_what_ranks_lower()
    {
        var metrics = RerankingEvaluator.Compute(Queries, atK: 2);
        // A: relevant first, then a negative: MRR 1, NDCG@2 = 1 / (1 + 1/log2 3). B: nothing relevant in the top 2.
        Assert.Equal(1.0 / 3, metrics["mrr@2"], 6);
        Assert.Equal(1 / 1.6309298 / 3, metrics["ndcg@2"], 6);
        Assert.Equal(((1 + 2.0 / 3) / 2 + 1.0 / 3) / 3, metrics["map"], 6);   // AP has no cut-off
    }

    private static DataRow Row(string json) => new("data.jsonl", 3, JsonNode.Parse(json)!.AsObject());

    [Fact]
    public void Rows_give_labelled_pairs_or_expand_positives_and_negatives()
    {
        var pair = RerankingExample.FromRow(Row("""{"query":"q","passage":"p","label":"0.75"}"""));
        Assert.Equal([new RerankingCandidate("p", 0.75, "passage")], pair.Candidates);
        var triplet = RerankingExample.FromRow(Row("""{"query":"q","positive":"yes","negative":["no","nope"]}"""));
        Assert.Equal(["yes", "no", "nope"], triplet.Candidates.Select(c => c.Document));
        Assert.Equal([1.0, 0, 0], triplet.Candidates.Select(c => c.Label));
        var numbered = RerankingExample.FromRow(Row("""{"query":"q","positive":"yes","negative_2":"b","negative_1":"a"}"""));
        Assert.Equal(["yes", "a", "b"], numbered.Candidates.Select(c => c.Document));

        var samples = RerankingEvaluator.FromExamples([pair, triplet, RerankingExample.FromRow(Row("""{"query":"q","text":"p2","label":0}"""))]);
        var sample = Assert.Single(samples);
        Assert.Equal(["p", "yes"], sample.Positives);
        Assert.Equal(["no", "nope", "p2"], sample.Negatives);
    }

    [Theory]
    [InlineData("""{"query":"q","document":"d","label":2}""", "label", "out_of_range")]
    [InlineData("""{"query":"q","document":"d"}""", "label", "missing_field")]
    [InlineData("""{"query":"q","document":"d","positive":"p"}""", "document", "unexpected_field")]
    [InlineData("""{"document":"d","label":1}""", "query", "missing_field")]
    [InlineData("""{"query":"q","label":1}""", "document", "missing_field")]
    public void Malformed_rows_name_the_field(string json, string field, string reason)
    {
        var error = Assert.Throws<DataFormatException>(() => RerankingExample.FromRow(Row(json)));
        Assert.Equal(field, error.Field);
        Assert.Equal(reason, error.Reason);
        Assert.Contains("data.jsonl:3", error.Message);
    }
    [Fact]
    public void Tied_scores_are_averaged_as_scikit_learn_does_not_handed_to_the_positive()
    {
        // One threshold admits both documents: AP = precision 1/2 at recall 1. NDCG: the tied pair shares its mean gain 1/2
        // over ranks 1 and 2, (1 + 1/log2 3) / 2 = 0.8154649 of the ideal 1. MRR ranks as np.argsort(y)[::-1]: ties latest
        // first, so the negative leads.
        var pair = RerankingEvaluator.Compute([([true, false], [0.5f, 0.5f])]);
        Assert.Equal(0.5, pair["map"], 6);
        Assert.Equal(0.8154649, pair["ndcg@10"], 6);
        Assert.Equal(0.5, pair["mrr@10"], 6);

        // A collapsed model (every score equal) with its positives listed first reads as chance, not as perfect:
        // AP 2/5, NDCG 2/5 · Σ_{r=1..5} 1/log2(r + 1) over 1 + 1/log2 3, MRR 1/4 (the last positive is fourth).
        var collapsed = RerankingEvaluator.Compute([([true, true, false, false, false], [0.3f, 0.3f, 0.3f, 0.3f, 0.3f])]);
        Assert.Equal(0.4, collapsed["map"], 6);
        Assert.Equal(0.4 * (1 + 0.6309298 + 0.5 + 0.4306766 + 0.3868528) / 1.6309298, collapsed["ndcg@10"], 6);
        Assert.Equal(0.25, collapsed["mrr@10"], 6);
    }

    [Fact]
    public void A_tie_inside_the_ranking_shares_its_ranks_and_the_cut_off_discounts_past_k()
    {
        // Scores 0.9 (negative), 0.5 (positive) = 0.5 (negative), 0.1 (positive). AP: thresholds 0.9 (no recall), 0.5
        // (recall 1/2 at precision 1/3), 0.1 (recall 1/2 more at precision 2/4) = 5/12. NDCG@10: 0.5 · (1/log2 3 + 1/2)
        // + 1/log2 5 over 1 + 1/log2 3. NDCG@2: only rank 2 of the tied group counts, 0.5 / log2 3 over the same ideal.
        // MRR: 0.9, then the tie latest first (the negative), then the positive at rank 3.
        IReadOnlyList<bool> relevant = [false, true, false, true];
        IReadOnlyList<float> scores = [0.9f, 0.5f, 0.5f, 0.1f];
        var at10 = RerankingEvaluator.Compute([(relevant, scores)]);
        Assert.Equal(5.0 / 12, at10["map"], 6);
        Assert.Equal((0.5 * (0.6309298 + 0.5) + 0.4306766) / 1.6309298, at10["ndcg@10"], 6);
        Assert.Equal(1.0 / 3, at10["mrr@10"], 6);
        var at2 = RerankingEvaluator.Compute([(relevant, scores)], atK: 2);
        Assert.Equal(0.5 * 0.6309298 / 1.6309298, at2["ndcg@2"], 6);
        Assert.Equal(0, at2["mrr@2"], 6);
    }
    [Fact]
    public void A_document_both_relevant_and_not_for_one_query_names_both_rows()
    {
        static RerankingExample At(long line, string json) => RerankingExample.FromRow(new DataRow("heldout.jsonl", line, JsonNode.Parse(json)!.AsObject()));
        var error = Assert.Throws<DataFormatException>(() => RerankingEvaluator.FromExamples([
            At(2, """{"query":"q","document":"d","label":1}"""),
            At(7, """{"query":"q","positive":"other","negative":"d"}"""),
        ]));
        Assert.Equal("conflicting_label", error.Reason);
        Assert.Contains("heldout.jsonl:7", error.Message);
        Assert.Contains("heldout.jsonl:2", error.Message);
        // The same label twice is one document.
        var sample = Assert.Single(RerankingEvaluator.FromExamples([At(2, """{"query":"q","document":"d","label":1}"""), At(3, """{"query":"q","text":"d","label":0.9}""")]));
        Assert.Equal(["d"], sample.Positives);
    }
}
