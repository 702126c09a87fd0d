namespace SharpTune.Advisors.ActiveLearning;

/// <summary>
/// Uncertainty of a predicted class distribution; higher means "label this next". Definitions follow Settles,
/// "Active Learning Literature Survey" (2009), §3.1.
/// </summary>
public static class UncertaintyScores
{
    /// <summary>Shannon entropy −Σ p·ln p (nats).</summary>
    public static double Entropy(IReadOnlyList<double> p) => -p.Where(x => x > 0).Sum(x => x * Math.Log(x));

    /// <summary>1 − (p₁ − p₂) with p₁ ≥ p₂ the two most probable classes: 1 when they tie.</summary>
    public static double Margin(IReadOnlyList<double> p)
    {
        if (p.Count < 2) return 0;
        var sorted = p.OrderDescending().ToArray();
        return 1 - (sorted[0] - sorted[1]);
    }

    /// <summary>1 − max p.</summary>
    public static double LeastConfidence(IReadOnlyList<double> p) => 1 - p.Max();

    /// <summary>The score for a named strategy (entropy, margin, least-confidence).</summary>
    public static double Score(string strategy, IReadOnlyList<double> p) => strategy switch
    {
        "entropy" => Entropy(p),
        "margin" => Margin(p),
        "least-confidence" => LeastConfidence(p),
        _ => throw new ArgumentException($"'{strategy}' is not an uncertainty strategy (entropy, margin, least-confidence)"),
    };

    /// <summary>Softmax of log-likelihoods, computed stably.</summary>
    public static double[] Softmax(IReadOnlyList<double> logits)
    {
        var max = logits.Max();
        var exp = logits.Select(l => Math.Exp(l - max)).ToArray();
        var sum = exp.Sum();
        return exp.Select(e => e / sum).ToArray();
    }
}
