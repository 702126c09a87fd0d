using System.Text.RegularExpressions;

namespace SharpTune.Evaluation;

/// <summary>Precision, recall and F1 of one ROUGE type, all on 0–1.</summary>
public readonly record struct RougeScore(double Precision, double Recall, double FMeasure)
{
    /// <summary>rouge-score's <c>scoring.fmeasure</c>: harmonic mean, 0 when both are 0.</summary>
    public static RougeScore FromPrecisionRecall(double precision, double recall) =>
        new(precision, recall, precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0);
}

/// <summary>
/// ROUGE as Google's rouge-score package computes it (<c>rouge_score/rouge_scorer.py</c>): rougeN from clipped n-gram
/// overlap, rougeL from the longest common subsequence, rougeLsum from the summary-level union LCS over
/// newline-separated sentences (with ROUGE-1.5.5's guard against double counting).
/// </summary>
/// <remarks>Written by hand: no .NET package reproduces rouge-score's tokenizer, stemmer and Lsum semantics.</remarks>
public sealed partial class Rouge
{
    /// <summary>The four types most reports quote.</summary>
    public static IReadOnlyList<string> DefaultTypes { get; } = ["rouge1", "rouge2", "rougeL", "rougeLsum"];

    [GeneratedRegex("^rouge([0-9])$")]
    private static partial Regex NgramType();

    private readonly IReadOnlyList<string> _types;
    private readonly RougeTokenizer _tokenizer;

    /// <summary>
    /// Creates a scorer for <paramref name="rougeTypes"/> ("rouge1".."rouge9", "rougeL", "rougeLsum"; default: the
    /// four in <see cref="DefaultTypes"/>); <paramref name="useStemmer"/> stems tokens with NLTK's Porter stemmer.
    /// </summary>
    public Rouge(IEnumerable<string>? rougeTypes = null, bool useStemmer = false)
    {
        _types = (rougeTypes ?? DefaultTypes).ToList();
        foreach (var type in _types)
        {
            var match = NgramType().Match(type);
            if (type is not ("rougeL" or "rougeLsum") && (!match.Success || match.Groups[1].Value == "0"))
                throw new ArgumentException($"Invalid ROUGE type '{type}': expected rouge1..rouge9, rougeL or rougeLsum.", nameof(rougeTypes));
        }
        _tokenizer = new RougeTokenizer(useStemmer);
    }

    /// <summary>The ROUGE types this scorer computes, in order.</summary>
    public IReadOnlyList<string> Types => _types;

    /// <summary>Scores one prediction against its target (reference); keys are the ROUGE types.</summary>
    public IReadOnlyDictionary<string, RougeScore> Score(string target, string prediction)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(prediction);
        var targetTokens = _tokenizer.Tokenize(target);
        var predictionTokens = _tokenizer.Tokenize(prediction);
        var result = new Dictionary<string, RougeScore>(StringComparer.Ordinal);
        foreach (var type in _types)
        {
            result[type] = type switch
            {
                "rougeL" => ScoreLcs(targetTokens, predictionTokens),
                "rougeLsum" => SummaryLevelLcs(Sentences(target), Sentences(prediction)),
                _ => ScoreNgrams(targetTokens, predictionTokens, type[5] - '0'),
            };
        }
        return result;
    }

    /// <summary>
    /// Scores a prediction against several targets, keeping per ROUGE type the target with the highest F-measure
    /// (rouge-score's <c>score_multi</c>; the first wins ties).
    /// </summary>
    public IReadOnlyDictionary<string, RougeScore> ScoreMulti(IReadOnlyList<string> targets, string prediction)
    {
        ArgumentNullException.ThrowIfNull(targets);
        if (targets.Count == 0) throw new ArgumentException("At least one target is required.", nameof(targets));
        var perTarget = targets.Select(t => Score(t, prediction)).ToList();
        return _types.ToDictionary(type => type, type =>
        {
            var best = perTarget[0][type];
            foreach (var scores in perTarget.Skip(1))
                if (scores[type].FMeasure > best.FMeasure) best = scores[type];
            return best;
        });
    }

    /// <summary>Scores aligned lists of targets and predictions, one result per pair.</summary>
    public IReadOnlyList<IReadOnlyDictionary<string, RougeScore>> ScoreAll(IReadOnlyList<string> targets, IReadOnlyList<string> predictions)
    {
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(predictions);
        if (targets.Count != predictions.Count)
            throw new ArgumentException($"There are {targets.Count} targets but {predictions.Count} predictions.", nameof(predictions));
        return targets.Select((t, i) => Score(t, predictions[i])).ToList();
    }

    // rougeLsum assumes one sentence per line; empty lines are ignored.
    private List<IReadOnlyList<string>> Sentences(string text) =>
        text.Split('\n').Where(s => s.Length > 0).Select(_tokenizer.Tokenize).ToList();

    private static RougeScore ScoreNgrams(IReadOnlyList<string> target, IReadOnlyList<string> prediction, int n)
    {
        var targetNgrams = Ngrams(target, n);
        var predictionNgrams = Ngrams(prediction, n);
        long overlap = 0;
        foreach (var (ngram, count) in targetNgrams)
            overlap += Math.Min(count, predictionNgrams.GetValueOrDefault(ngram));
        long targetCount = targetNgrams.Values.Sum(v => (long)v);
        long predictionCount = predictionNgrams.Values.Sum(v => (long)v);
        return RougeScore.FromPrecisionRecall(
            (double)overlap / Math.Max(predictionCount, 1), (double)overlap / Math.Max(targetCount, 1));
    }

    // Tokens are [a-z0-9]+, so a space-joined key is unambiguous.
    private static Dictionary<string, int> Ngrams(IReadOnlyList<string> tokens, int n)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i + n <= tokens.Count; i++)
        {
            string key = string.Join(' ', tokens.Skip(i).Take(n));
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }
        return counts;
    }

    private static RougeScore ScoreLcs(IReadOnlyList<string> target, IReadOnlyList<string> prediction)
    {
        if (target.Count == 0 || prediction.Count == 0) return new RougeScore(0, 0, 0);
        int lcs = LcsTable(target, prediction)[target.Count, prediction.Count];
        return RougeScore.FromPrecisionRecall((double)lcs / prediction.Count, (double)lcs / target.Count);
    }

    internal static int[,] LcsTable<T>(IReadOnlyList<T> reference, IReadOnlyList<T> candidate)
    {
        var comparer = EqualityComparer<T>.Default;
        var table = new int[reference.Count + 1, candidate.Count + 1];
        for (int i = 1; i <= reference.Count; i++)
            for (int j = 1; j <= candidate.Count; j++)
                table[i, j] = comparer.Equals(reference[i - 1], candidate[j - 1])
                    ? table[i - 1, j - 1] + 1
                    : Math.Max(table[i - 1, j], table[i, j - 1]);
        return table;
    }

    /// <summary>Indices into <paramref name="reference"/> of one LCS, read back as rouge-score's _backtrack_norec does.</summary>
    internal static List<int> LcsIndices<T>(IReadOnlyList<T> reference, IReadOnlyList<T> candidate)
    {
        var table = LcsTable(reference, candidate);
        var comparer = EqualityComparer<T>.Default;
        var indices = new List<int>();
        int i = reference.Count, j = candidate.Count;
        while (i > 0 && j > 0)
        {
            if (comparer.Equals(reference[i - 1], candidate[j - 1])) { indices.Add(i - 1); i--; j--; }
            else if (table[i, j - 1] > table[i - 1, j]) j--;
            else i--;
        }
        indices.Reverse();
        return indices;
    }

    /// <summary>Tokens of <paramref name="reference"/> in the union of its LCS with each candidate sentence.</summary>
    internal static List<T> UnionLcs<T>(IReadOnlyList<T> reference, IEnumerable<IReadOnlyList<T>> candidates)
    {
        var union = new SortedSet<int>();
        foreach (var candidate in candidates) union.UnionWith(LcsIndices(reference, candidate));
        return union.Select(i => reference[i]).ToList();
    }

    internal static RougeScore SummaryLevelLcs(IReadOnlyList<IReadOnlyList<string>> referenceSentences, IReadOnlyList<IReadOnlyList<string>> candidateSentences)
    {
        if (referenceSentences.Count == 0 || candidateSentences.Count == 0) return new RougeScore(0, 0, 0);
        int m = referenceSentences.Sum(s => s.Count);
        int n = candidateSentences.Sum(s => s.Count);
        if (m == 0 || n == 0) return new RougeScore(0, 0, 0);

        // Token budgets keep a token from being credited more often than it occurs (as ROUGE-1.5.5 does).
        var referenceBudget = CountTokens(referenceSentences);
        var candidateBudget = CountTokens(candidateSentences);
        int hits = 0;
        foreach (var reference in referenceSentences)
        {
            foreach (var token in UnionLcs(reference, candidateSentences))
            {
                if (candidateBudget.GetValueOrDefault(token) > 0 && referenceBudget.GetValueOrDefault(token) > 0)
                {
                    hits++;
                    candidateBudget[token]--;
                    referenceBudget[token]--;
                }
            }
        }
        return RougeScore.FromPrecisionRecall((double)hits / n, (double)hits / m);
    }

    private static Dictionary<string, int> CountTokens(IEnumerable<IReadOnlyList<string>> sentences)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var token in sentences.SelectMany(s => s)) counts[token] = counts.GetValueOrDefault(token) + 1;
        return counts;
    }
}
