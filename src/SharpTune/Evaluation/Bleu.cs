using System.Globalization;

namespace SharpTune.Evaluation;

/// <summary>
/// Corpus and sentence BLEU exactly as sacreBLEU 2.x computes them (<c>sacrebleu/metrics/bleu.py</c>): n-gram counts
/// clipped by the maximum count over the references of a segment, the closest reference length (shorter wins ties)
/// for the brevity penalty, statistics summed over the corpus, then smoothing.
/// </summary>
/// <remarks>Written by hand because no .NET package reproduces sacreBLEU's tokenizer, smoothing and signature.</remarks>
public sealed class Bleu
{
    private readonly BleuOptions _options;

    /// <summary>Creates a BLEU scorer; <paramref name="options"/> default to sacreBLEU's defaults.</summary>
    public Bleu(BleuOptions? options = null)
    {
        _options = options ?? new BleuOptions();
        if (_options.MaxNgramOrder < 1)
            throw new ArgumentOutOfRangeException(nameof(options), _options.MaxNgramOrder, "MaxNgramOrder must be at least 1.");
    }

    /// <summary>
    /// Corpus BLEU. <paramref name="referenceSets"/> holds one list per reference set, each aligned with
    /// <paramref name="hypotheses"/> (sacreBLEU's layout). A null reference means "no reference in this set for this
    /// segment" (sacreBLEU's <c>None</c>); an empty string is an empty reference, as in sacreBLEU since 2.2.
    /// </summary>
    public BleuScore CorpusScore(IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string?>> referenceSets)
    {
        var (perSegment, uniformCount) = ReferenceSets.BySegment(hypotheses, referenceSets);
        int order = _options.MaxNgramOrder;
        var correct = new long[order];
        var total = new long[order];
        long sysLen = 0, refLen = 0;
        for (int i = 0; i < hypotheses.Count; i++)
        {
            var (hypLen, closestRefLen) = AddSegmentStatistics(hypotheses[i], perSegment[i], correct, total);
            sysLen += hypLen;
            refLen += closestRefLen;
        }
        return Compute(correct, total, checked((int)sysLen), checked((int)refLen), Signature(uniformCount));
    }

    /// <summary>Sentence BLEU of one hypothesis against its references (consider <see cref="BleuOptions.EffectiveOrder"/>).</summary>
    public BleuScore SentenceScore(string hypothesis, IReadOnlyList<string> references)
    {
        ArgumentNullException.ThrowIfNull(references);
        return CorpusScore([hypothesis], references.Select(r => (IReadOnlyList<string?>)[r]).ToList());
    }

    /// <summary>The sacreBLEU signature for a given reference count (null = variable).</summary>
    public string Signature(int? referenceCount)
    {
        string smooth = _options.Smoothing switch
        {
            BleuSmoothing.None => "none",
            BleuSmoothing.Exp => "exp",
            BleuSmoothing.Floor => $"floor[{SmoothValue().ToString("F2", CultureInfo.InvariantCulture)}]",
            BleuSmoothing.AddK => $"add-k[{SmoothValue().ToString("F2", CultureInfo.InvariantCulture)}]",
            _ => throw new InvalidOperationException($"Unknown smoothing {_options.Smoothing}."),
        };
        return SacreBleuSignature.Format(
        [
            ("nrefs", SacreBleuSignature.ReferenceCount(referenceCount)),
            ("case", _options.Lowercase ? "lc" : "mixed"),
            ("eff", _options.EffectiveOrder ? "yes" : "no"),
            ("tok", _options.Tokenization == BleuTokenization.Tokenizer13a ? "13a" : "none"),
            ("smooth", smooth),
        ]);
    }

    private double SmoothValue() => _options.SmoothValue ?? (_options.Smoothing == BleuSmoothing.Floor ? 0.1 : 1.0);

    private string Preprocess(string segment)
    {
        if (_options.Lowercase) segment = PythonText.Lower(segment);
        segment = PythonText.RStrip(segment);
        return _options.Tokenization == BleuTokenization.Tokenizer13a ? Tokenizer13a.Tokenize(segment) : segment;
    }

    private (int HypLen, int RefLen) AddSegmentStatistics(string hypothesis, List<string> references, long[] correct, long[] total)
    {
        int order = _options.MaxNgramOrder;
        Dictionary<string, int>? maxRefCounts = null;
        var refLengths = new List<int>(references.Count);
        foreach (var reference in references)
        {
            var (ngrams, length) = Ngrams(Preprocess(reference), order);
            refLengths.Add(length);
            if (maxRefCounts is null) { maxRefCounts = ngrams; continue; }
            foreach (var (ngram, count) in ngrams)
                maxRefCounts[ngram] = Math.Max(maxRefCounts.GetValueOrDefault(ngram), count);
        }

        var (hypNgrams, hypLen) = Ngrams(Preprocess(hypothesis), order);
        foreach (var (ngram, count) in hypNgrams)
        {
            int n = NgramOrder(ngram) - 1;
            total[n] += count;
            if (maxRefCounts!.TryGetValue(ngram, out int refCount)) correct[n] += Math.Min(count, refCount);
        }
        return (hypLen, ClosestReferenceLength(hypLen, refLengths));
    }

    // Ties go to the shorter reference, as in sacreBLEU's _get_closest_ref_len.
    private static int ClosestReferenceLength(int hypLen, List<int> refLengths)
    {
        int closestDiff = -1, closestLen = -1;
        foreach (int refLen in refLengths)
        {
            int diff = Math.Abs(hypLen - refLen);
            if (closestDiff == -1 || diff < closestDiff) { closestDiff = diff; closestLen = refLen; }
            else if (diff == closestDiff && refLen < closestLen) closestLen = refLen;
        }
        return closestLen;
    }

    // Tokens never contain whitespace (they come from a whitespace split), so a space-joined key is unambiguous.
    private static (Dictionary<string, int> Ngrams, int Length) Ngrams(string line, int maxOrder)
    {
        var tokens = PythonText.SplitWhitespace(line);
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int n = 1; n <= maxOrder; n++)
            for (int i = 0; i + n <= tokens.Count; i++)
            {
                string key = string.Join(' ', tokens.Skip(i).Take(n));
                counts[key] = counts.GetValueOrDefault(key) + 1;
            }
        return (counts, tokens.Count);
    }

    private static int NgramOrder(string ngram) => ngram.Count(c => c == ' ') + 1;

    /// <summary>
    /// BLEU from sufficient statistics (sacreBLEU's <c>compute_bleu</c>), with this scorer's smoothing and order.
    /// </summary>
    public BleuScore Compute(IReadOnlyList<long> correct, IReadOnlyList<long> total, int sysLen, int refLen, string signature)
    {
        int order = _options.MaxNgramOrder;
        if (correct.Count != order || total.Count != order)
            throw new ArgumentException($"Expected {order} counts and totals, got {correct.Count} and {total.Count}.");
        double brevityPenalty = sysLen < refLen ? (sysLen > 0 ? Math.Exp(1 - (double)refLen / sysLen) : 0.0) : 1.0;
        var precisions = new double[order];
        var counts = correct.Select(c => checked((int)c)).ToArray();
        var totals = total.Select(t => checked((int)t)).ToArray();

        // sacreBLEU returns 0 straight away when nothing matches at any order (its issue #141).
        if (correct.All(c => c == 0))
            return new BleuScore(0.0, counts, totals, precisions, brevityPenalty, sysLen, refLen, signature);

        double smoothValue = SmoothValue();
        double smoothMteval = 1.0;
        int effectiveOrder = order;
        for (int n = 1; n <= order; n++)
        {
            double matches = correct[n - 1], candidates = total[n - 1];
            if (_options.Smoothing == BleuSmoothing.AddK && n > 1) { matches += smoothValue; candidates += smoothValue; }
            if (candidates == 0) break;
            if (_options.EffectiveOrder) effectiveOrder = n;
            if (matches == 0)
            {
                if (_options.Smoothing == BleuSmoothing.Exp)
                {
                    smoothMteval *= 2;
                    precisions[n - 1] = 100.0 / (smoothMteval * candidates);
                }
                else if (_options.Smoothing == BleuSmoothing.Floor)
                    precisions[n - 1] = 100.0 * smoothValue / candidates;
            }
            else precisions[n - 1] = 100.0 * matches / candidates;
        }

        double logSum = 0;
        for (int n = 0; n < effectiveOrder; n++) logSum += SacreLog(precisions[n]);
        double score = brevityPenalty * Math.Exp(logSum / effectiveOrder);
        return new BleuScore(score, counts, totals, precisions, brevityPenalty, sysLen, refLen, signature);
    }

    // sacreBLEU's my_log: log of zero is a large negative number rather than -inf.
    private static double SacreLog(double x) => x > 0 ? Math.Log(x) : -9999999999;
}
