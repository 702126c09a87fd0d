namespace SharpTune.Data.Curation;

/// <summary>
/// Banding for locality-sensitive hashing: a signature of k = b·r values is cut into b bands of r rows; two texts
/// become candidates when any band matches, which happens with probability 1 − (1 − s^r)^b at Jaccard s.
/// </summary>
public readonly record struct LshParameters(int Bands, int RowsPerBand)
{
    /// <summary>
    /// The (b, r) with b·r ≤ <paramref name="numPermutations"/> that minimises the weighted area of false positives
    /// (∫₀ᵗ P(candidate|s) ds) plus false negatives (∫ₜ¹ 1 − P(candidate|s) ds) — the standard choice, as in datasketch's
    /// <c>MinHashLSH._optimal_param</c>. The S-curve's midpoint (1/b)^(1/r) then lands near the threshold t.
    /// </summary>
    public static LshParameters ForThreshold(double threshold, int numPermutations,
        double falsePositiveWeight = 0.5, double falseNegativeWeight = 0.5)
    {
        if (threshold is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "Jaccard threshold must be in (0, 1)");
        var best = new LshParameters(1, numPermutations);
        double bestError = double.MaxValue;
        for (int b = 1; b <= numPermutations; b++)
        for (int r = 1; r <= numPermutations / b; r++)
        {
            double falsePositive = Integrate(s => CandidateProbability(s, b, r), 0, threshold);
            double falseNegative = Integrate(s => 1 - CandidateProbability(s, b, r), threshold, 1);
            double error = falsePositiveWeight * falsePositive + falseNegativeWeight * falseNegative;
            if (error < bestError) { bestError = error; best = new LshParameters(b, r); }
        }
        return best;
    }

    /// <summary>Probability that two texts of Jaccard <paramref name="similarity"/> share at least one band.</summary>
    public static double CandidateProbability(double similarity, int bands, int rows) =>
        1 - Math.Pow(1 - Math.Pow(similarity, rows), bands);

    /// <summary>Jaccard at which the candidate probability rises most steeply, about (1/b)^(1/r).</summary>
    public double ApproximateThreshold => Math.Pow(1.0 / Bands, 1.0 / RowsPerBand);

    private static double Integrate(Func<double, double> f, double from, double to, int steps = 64)
    {
        // Simpson's rule; the integrands are smooth polynomials in s.
        double h = (to - from) / steps, sum = f(from) + f(to);
        for (int i = 1; i < steps; i++) sum += f(from + i * h) * (i % 2 == 1 ? 4 : 2);
        return sum * h / 3;
    }
}
