using System.Globalization;

namespace SharpTune.Evaluation;

/// <summary>chrF settings; the defaults are sacreBLEU 2.x's chrF2 (character order 6, no word n-grams, beta 2).</summary>
public sealed record ChrfOptions
{
    /// <summary>Character n-gram order (6).</summary>
    public int CharOrder { get; init; } = 6;
    /// <summary>Word n-gram order: 0 for chrF, 2 for chrF++.</summary>
    public int WordOrder { get; init; }
    /// <summary>Recall weight (2).</summary>
    public int Beta { get; init; } = 2;
    /// <summary>Lowercase before extracting n-grams.</summary>
    public bool Lowercase { get; init; }
    /// <summary>Keep whitespace inside character n-grams (sacreBLEU removes it by default).</summary>
    public bool Whitespace { get; init; }
    /// <summary>
    /// Average per-order F-scores with epsilon for empty orders (chrF++.py/NLTK/Moses style) instead of sacreBLEU's
    /// default effective-order averaging of precision and recall.
    /// </summary>
    public bool EpsSmoothing { get; init; }

    /// <summary>chrF++ : chrF with word bigrams.</summary>
    public static ChrfOptions ChrfPlusPlus { get; } = new() { WordOrder = 2 };
}

/// <summary>A chrF result: <see cref="Score"/> on 0–100.</summary>
/// <param name="Score">chrF, 0–100.</param>
/// <param name="Name">sacreBLEU's name: chrF2, chrF2++ …</param>
/// <param name="Signature">sacreBLEU 2.x signature, e.g. <c>nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.5.1</c>.</param>
public sealed record ChrfScore(double Score, string Name, string Signature)
{
    /// <summary>sacreBLEU's line, e.g. <c>chrF2 = 59.74</c>.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Name} = {Score:F2}");
}

/// <summary>
/// chrF and chrF++ exactly as sacreBLEU 2.x computes them (<c>sacrebleu/metrics/chrf.py</c>): per segment the
/// reference with the best sentence-level F-score is chosen, its [hyp, ref, match] counts per order are summed
/// over the corpus, and the corpus F-beta is computed from the summed counts.
/// </summary>
/// <remarks>Written by hand because no .NET package reproduces sacreBLEU's chrF statistics and smoothing.</remarks>
public sealed class Chrf
{
    private const string Punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    private readonly ChrfOptions _options;

    /// <summary>Creates a chrF scorer; <paramref name="options"/> default to sacreBLEU's chrF2.</summary>
    public Chrf(ChrfOptions? options = null)
    {
        _options = options ?? new ChrfOptions();
        if (_options.CharOrder < 0 || _options.WordOrder < 0 || _options.CharOrder + _options.WordOrder == 0)
            throw new ArgumentOutOfRangeException(nameof(options), "CharOrder and WordOrder must be non-negative and not both zero.");
    }

    private int Order => _options.CharOrder + _options.WordOrder;

    /// <summary>
    /// Corpus chrF; <paramref name="referenceSets"/> holds one list per reference set, aligned with the hypotheses. A null
    /// reference is absent for that segment; an empty string is an empty reference (sacreBLEU 2.2+).
    /// </summary>
    public ChrfScore CorpusScore(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string?>> referenceSets)
    {
        var (perSegment, uniformCount) = ReferenceSets.BySegment(hypotheses, referenceSets);
        var sums = new long[3 * Order];
        for (int i = 0; i < hypotheses.Count; i++)
        {
            var stats = SegmentStatistics(hypotheses[i], perSegment[i]);
            for (int k = 0; k < sums.Length; k++) sums[k] += stats[k];
        }
        return new ChrfScore(FScore(sums), Name, Signature(uniformCount));
    }

    /// <summary>Sentence chrF of one hypothesis against its references.</summary>
    public ChrfScore SentenceScore(string hypothesis, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(references);
        return CorpusScore([hypothesis], references.Select(r => (IReadOnlyList<string?>)[r]).ToList());
    }

    /// <summary>sacreBLEU's name for this configuration: chrF{beta} followed by one '+' per word order.</summary>
    public string Name => $"chrF{_options.Beta}" + new string('+', _options.WordOrder);

    /// <summary>The sacreBLEU signature for a given reference count (null = variable).</summary>
    public string Signature(int? referenceCount) => SacreBleuSignature.Format(
    [
        ("nrefs", SacreBleuSignature.ReferenceCount(referenceCount)),
        ("case", _options.Lowercase ? "lc" : "mixed"),
        ("eff", _options.EpsSmoothing ? "no" : "yes"),
        ("nc", _options.CharOrder.ToString(CultureInfo.InvariantCulture)),
        ("nw", _options.WordOrder.ToString(CultureInfo.InvariantCulture)),
        ("space", _options.Whitespace ? "yes" : "no"),
    ]);

    private long[] SegmentStatistics(string hypothesis, List<string> references)
    {
        var hypNgrams = AllNgrams(Preprocess(hypothesis));
        long[] best = [];
        double bestF = -1.0;
        foreach (var reference in references)
        {
            var refNgrams = AllNgrams(Preprocess(reference));
            var stats = new long[3 * Order];
            for (int o = 0; o < Order; o++)
            {
                var (hypCount, refCount, matchCount) = MatchStatistics(hypNgrams[o], refNgrams[o]);
                stats[3 * o] = hypCount; stats[3 * o + 1] = refCount; stats[3 * o + 2] = matchCount;
            }
            double f = FScore(stats);
            if (f > bestF) { bestF = f; best = stats; }
        }
        return best;
    }

    private string Preprocess(string segment) => _options.Lowercase ? PythonText.Lower(segment) : segment;

    private List<Dictionary<string, int>> AllNgrams(string segment)
    {
        var result = new List<Dictionary<string, int>>(Order);
        string chars = _options.Whitespace ? segment : string.Concat(PythonText.SplitWhitespace(segment));
        var points = PythonText.CodePoints(chars);
        for (int n = 1; n <= _options.CharOrder; n++) result.Add(Count(points, n, ""));
        if (_options.WordOrder > 0)
        {
            var words = SeparatePunctuation(segment).ToArray();
            for (int n = 1; n <= _options.WordOrder; n++) result.Add(Count(words, n, " "));
        }
        return result;
    }

    private static Dictionary<string, int> Count(string[] units, int n, string separator)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i + n <= units.Length; i++)
        {
            string key = string.Join(separator, units, i, n);
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }
        return counts;
    }

    // sacreBLEU's _remove_punctuation: one leading OR trailing punctuation mark is split off a word (trailing first).
    private static IEnumerable<string> SeparatePunctuation(string sentence)
    {
        foreach (var word in PythonText.SplitWhitespace(sentence))
        {
            var points = PythonText.CodePoints(word);
            if (points.Length == 1) { yield return word; continue; }
            if (IsPunctuation(points[^1])) { yield return string.Concat(points[..^1]); yield return points[^1]; }
            else if (IsPunctuation(points[0])) { yield return points[0]; yield return string.Concat(points[1..]); }
            else yield return word;
        }
    }

    private static bool IsPunctuation(string point) => point.Length == 1 && Punctuation.Contains(point[0]);

    // Hypothesis n-grams count only when the reference has n-grams of that order, as in sacreBLEU.
    private static (long Hyp, long Ref, long Match) MatchStatistics(Dictionary<string, int> hyp, Dictionary<string, int> reference)
    {
        long match = 0, hypCount = 0;
        foreach (var (ngram, count) in hyp)
        {
            hypCount += count;
            if (reference.TryGetValue(ngram, out int refCount)) match += Math.Min(count, refCount);
        }
        return (reference.Count > 0 ? hypCount : 0, reference.Values.Sum(v => (long)v), match);
    }

    private double FScore(long[] statistics)
    {
        const double eps = 1e-16;
        double factor = (double)_options.Beta * _options.Beta;
        double score = 0, avgPrecision = 0, avgRecall = 0;
        int effectiveOrder = 0;
        for (int o = 0; o < Order; o++)
        {
            long nHyp = statistics[3 * o], nRef = statistics[3 * o + 1], nMatch = statistics[3 * o + 2];
            double precision = nHyp > 0 ? (double)nMatch / nHyp : eps;
            double recall = nRef > 0 ? (double)nMatch / nRef : eps;
            double denominator = factor * precision + recall;
            score += denominator > 0 ? (1 + factor) * precision * recall / denominator : eps;
            if (nHyp > 0 && nRef > 0)
            {
                avgPrecision += precision;
                avgRecall += recall;
                effectiveOrder++;
            }
        }

        if (_options.EpsSmoothing) return 100 * score / Order;
        if (effectiveOrder == 0) return 0.0;
        avgPrecision /= effectiveOrder;
        avgRecall /= effectiveOrder;
        if (avgPrecision + avgRecall == 0) return 0.0;
        // Same operation order as sacreBLEU so results agree to the last bit.
        double fBeta = (1 + factor) * avgPrecision * avgRecall;
        fBeta /= factor * avgPrecision + avgRecall;
        return 100 * fBeta;
    }
}
