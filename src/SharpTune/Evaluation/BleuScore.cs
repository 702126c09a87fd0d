using System.Globalization;

namespace SharpTune.Evaluation;

/// <summary>How zero n-gram matches are smoothed (sacreBLEU's <c>smooth_method</c>).</summary>
public enum BleuSmoothing
{
    /// <summary>No smoothing: a zero precision makes BLEU zero.</summary>
    None,
    /// <summary>Chen &amp; Cherry method 1: a zero match count becomes <see cref="BleuOptions.SmoothValue"/> (default 0.1).</summary>
    Floor,
    /// <summary>Chen &amp; Cherry method 2: add <see cref="BleuOptions.SmoothValue"/> (default 1) to counts of orders &gt; 1.</summary>
    AddK,
    /// <summary>Chen &amp; Cherry method 3 (mteval-v13a's NIST smoothing), sacreBLEU's default.</summary>
    Exp,
}

/// <summary>Which tokenizer BLEU applies before counting n-grams.</summary>
public enum BleuTokenization
{
    /// <summary>sacreBLEU's default "13a" (mteval-v13a).</summary>
    Tokenizer13a,
    /// <summary>No tokenization: split on whitespace only (sacreBLEU's "none").</summary>
    None,
}

/// <summary>BLEU settings; the defaults are sacreBLEU 2.x's.</summary>
public sealed record BleuOptions
{
    /// <summary>Lowercase hypotheses and references before tokenizing.</summary>
    public bool Lowercase { get; init; }
    /// <summary>Tokenizer; 13a by default.</summary>
    public BleuTokenization Tokenization { get; init; } = BleuTokenization.Tokenizer13a;
    /// <summary>Smoothing method; 'exp' by default.</summary>
    public BleuSmoothing Smoothing { get; init; } = BleuSmoothing.Exp;
    /// <summary>Value for <see cref="BleuSmoothing.Floor"/> (default 0.1) and <see cref="BleuSmoothing.AddK"/> (default 1).</summary>
    public double? SmoothValue { get; init; }
    /// <summary>Highest n-gram order (4).</summary>
    public int MaxNgramOrder { get; init; } = 4;
    /// <summary>Stop at the highest order with any hypothesis n-grams (recommended for sentence-level BLEU).</summary>
    public bool EffectiveOrder { get; init; }
}

/// <summary>A BLEU result in sacreBLEU's terms; <see cref="Score"/> and <see cref="Precisions"/> are on 0–100.</summary>
/// <param name="Score">BLEU, 0–100.</param>
/// <param name="Counts">
/// Matched (clipped) n-gram counts per order 1..N, as counted. sacreBLEU's add-k smoothing adds k to its counts and
/// totals of orders 2..N in place, so its <c>BLEUScore.counts</c>/<c>totals</c> then read k higher; the score and
/// precisions agree.
/// </param>
/// <param name="Totals">Hypothesis n-gram counts per order 1..N, as counted (see <paramref name="Counts"/>).</param>
/// <param name="Precisions">Smoothed n-gram precisions per order, 0–100.</param>
/// <param name="BrevityPenalty">Brevity penalty.</param>
/// <param name="SysLen">Total hypothesis length in tokens.</param>
/// <param name="RefLen">Total closest-reference length in tokens.</param>
/// <param name="Signature">sacreBLEU 2.x signature, e.g. <c>nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1</c>.</param>
public sealed record BleuScore(
    double Score,
    IReadOnlyList<int> Counts,
    IReadOnlyList<int> Totals,
    IReadOnlyList<double> Precisions,
    double BrevityPenalty,
    int SysLen,
    int RefLen,
    string Signature)
{
    /// <summary>Hypothesis length over reference length (0 when the reference is empty).</summary>
    public double Ratio => RefLen == 0 ? 0 : (double)SysLen / RefLen;

    /// <summary>sacreBLEU's line, e.g. <c>BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)</c>.</summary>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        string precisions = string.Join('/', Precisions.Select(p => p.ToString("F1", c)));
        return string.Create(c,
            $"BLEU = {Score:F2} {precisions} (BP = {BrevityPenalty:F3} ratio = {Ratio:F3} hyp_len = {SysLen} ref_len = {RefLen})");
    }
}
