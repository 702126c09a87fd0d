using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Tokenization;

namespace SharpTune.Advisors.ActiveLearning;

/// <summary>How to pick the next rows to label.</summary>
public sealed record SelectionOptions
{
    /// <summary>How many rows to pick.</summary>
    public required int Count { get; init; }
    /// <summary>entropy, margin, least-confidence (need <see cref="Labels"/>), perplexity, or diverse.</summary>
    public string Strategy { get; init; } = "entropy";
    /// <summary>The class labels, for classification pools (rows with a "text" field).</summary>
    public IReadOnlyList<string> Labels { get; init; } = [];
    /// <summary>For diverse with labels: k-center greedy runs over the this-many-times-k most uncertain rows.</summary>
    public int DiverseCandidateFactor { get; init; } = 4;

    public static IReadOnlyList<string> Strategies { get; } = ["entropy", "margin", "least-confidence", "perplexity", "diverse"];
}

/// <summary>A picked row: its position in the pool, its original fields, its score and rank (1 = label first).</summary>
public sealed record SelectedRow(int PoolIndex, DataRow Row, double Score, int Rank, string Strategy)
{
    /// <summary>The row's original fields plus <c>score</c>, <c>strategy</c> and <c>rank</c>, as written to JSONL.</summary>
    public JsonObject ToJson()
    {
        var json = (JsonObject)Row.Fields.DeepClone();
        json["score"] = double.IsFinite(Score) ? Score : null;
        json["strategy"] = Strategy;
        json["rank"] = Rank;
        return json;
    }
}

/// <summary>
/// Active learning's selection step: score an unlabeled pool with the current model and return the rows to label next.
/// Uncertainty strategies rank by the model's doubt about the label; perplexity by per-token loss of the text (or of a
/// completion given its prompt); diverse picks by k-center greedy on mean-pooled hidden states, among the most
/// uncertain rows when labels are known.
/// </summary>
public static class ActiveLearningSelector
{
    public static IReadOnlyList<SelectedRow> Select(CausalLanguageModel model, HfTokenizer tokenizer, IReadOnlyList<DataRow> pool,
        SelectionOptions options)
    {
        if (options.Count <= 0) throw new ArgumentException($"the number of rows to select must be positive, found {options.Count}");
        if (!SelectionOptions.Strategies.Contains(options.Strategy))
            throw new ArgumentException($"unknown strategy '{options.Strategy}' (choose one of: {string.Join(", ", SelectionOptions.Strategies)})");
        if (pool.Count == 0) return [];
        var scorer = new PoolScorer(model, tokenizer);
        var k = Math.Min(options.Count, pool.Count);

        if (options.Strategy == "perplexity")
        {
            var scores = PerplexityScores(scorer, pool);
            return Rank(pool, scores, k, options.Strategy);
        }
        if (options.Strategy != "diverse")
        {
            RequireLabels(options);
            var probabilities = scorer.LabelProbabilities(pool.Select(TextOf).ToArray(), options.Labels);
            return Rank(pool, probabilities.Select(p => UncertaintyScores.Score(options.Strategy, p)).ToArray(), k, options.Strategy);
        }

        var texts = pool.Select(TextOf).ToArray();
        int[] candidates;
        double[]? uncertainty = null;
        if (options.Labels.Count >= 2)
        {
            uncertainty = scorer.LabelProbabilities(texts, options.Labels).Select(UncertaintyScores.Entropy).ToArray();
            candidates = Enumerable.Range(0, pool.Count).OrderByDescending(i => uncertainty[i])
                .Take(Math.Max(k, k * options.DiverseCandidateFactor)).ToArray();   // most uncertain first
        }
        else
        {
            candidates = Enumerable.Range(0, pool.Count).ToArray();
        }
        var embeddings = scorer.MeanPooledHidden(candidates.Select(i => texts[i]).ToArray());
        var first = uncertainty is null ? NearestToMean(embeddings) : 0;
        var picks = KCenterGreedy.Select(embeddings, k, first: first);
        return picks.Select((p, rank) =>
        {
            var index = candidates[p];
            var score = uncertainty?[index] ?? (rank == 0 ? 0 : DistanceToEarlier(embeddings, picks, rank));
            return new SelectedRow(index, pool[index], score, rank + 1, options.Strategy);
        }).ToArray();
    }

    /// <summary>Writes the selection as JSONL: original fields plus score, strategy and rank.</summary>
    public static void WriteJsonl(string path, IEnumerable<SelectedRow> rows)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        File.WriteAllLines(path, rows.Select(r => r.ToJson().ToJsonString()));
    }

    /// <summary>The text a row is classified or embedded by: "text", else "prompt".</summary>
    public static string TextOf(DataRow row) =>
        (row.Fields["text"] ?? row.Fields["prompt"])?.GetValue<string>()
        ?? throw new InvalidDataException($"{row.Location}: a pool row needs a \"text\" (or \"prompt\") string field");

    private static double[] PerplexityScores(PoolScorer scorer, IReadOnlyList<DataRow> pool)
    {
        var withCompletion = pool.All(r => r.Fields["prompt"] is not null && r.Fields["completion"] is not null);
        return withCompletion
            ? scorer.CompletionPerplexities(pool.Select(r => (r.Fields["prompt"]!.GetValue<string>(), r.Fields["completion"]!.GetValue<string>())).ToArray())
            : scorer.Perplexities(pool.Select(TextOf).ToArray());
    }

    private static IReadOnlyList<SelectedRow> Rank(IReadOnlyList<DataRow> pool, double[] scores, int k, string strategy) =>
        Enumerable.Range(0, pool.Count).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(k)
            .Select((i, rank) => new SelectedRow(i, pool[i], scores[i], rank + 1, strategy)).ToArray();

    private static void RequireLabels(SelectionOptions options)
    {
        if (options.Labels.Count < 2)
            throw new ArgumentException($"strategy '{options.Strategy}' scores label options: give at least two labels (--labels a,b)");
    }

    private static int NearestToMean(IReadOnlyList<float[]> points)
    {
        var mean = new double[points[0].Length];
        foreach (var p in points) for (var j = 0; j < p.Length; j++) mean[j] += p[j] / (double)points.Count;
        return Enumerable.Range(0, points.Count).MinBy(i => points[i].Select((v, j) => (v - mean[j]) * (v - mean[j])).Sum());
    }

    private static double DistanceToEarlier(IReadOnlyList<float[]> points, IReadOnlyList<int> picks, int rank) =>
        picks.Take(rank).Min(q => Math.Sqrt(points[picks[rank]].Select((v, j) => (v - points[q][j]) * (double)(v - points[q][j])).Sum()));
}
