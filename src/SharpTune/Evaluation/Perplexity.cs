namespace SharpTune.Evaluation;

/// <summary>
/// Token-weighted perplexity: exp of the mean negative log-likelihood per token (natural logarithms). Pooling
/// tokens — rather than averaging per-sequence perplexities — is what lm-eval-harness and Hugging Face's
/// perplexity guide report, and it does not overweight short sequences.
/// </summary>
public static class Perplexity
{
    /// <summary>Perplexity from per-token log-probabilities (natural log, each ≤ 0): exp(−sum / count).</summary>
    public static double FromTokenLogProbs(IEnumerable<double> logProbs)
    {
        ArgumentNullException.ThrowIfNull(logProbs);
        double sum = 0;
        long count = 0;
        foreach (double logProb in logProbs)
        {
            Validate(logProb, count);
            sum += logProb;
            count++;
        }
        return FromTotalNegativeLogLikelihood(-sum, count);
    }

    /// <summary>Perplexity over several sequences, every token weighted equally.</summary>
    public static double FromSequenceLogProbs(IEnumerable<IEnumerable<double>> sequences)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        return FromTokenLogProbs(sequences.SelectMany(s => s ?? throw new ArgumentException("A sequence is null.", nameof(sequences))));
    }

    /// <summary>Perplexity from a summed negative log-likelihood (nats) and the number of tokens it covers.</summary>
    public static double FromTotalNegativeLogLikelihood(double totalNll, long tokenCount)
    {
        if (tokenCount <= 0) throw new ArgumentException("Perplexity needs at least one token.", nameof(tokenCount));
        if (double.IsNaN(totalNll) || totalNll < 0)
            throw new ArgumentOutOfRangeException(nameof(totalNll), totalNll, "A negative log-likelihood must be a non-negative number.");
        return Math.Exp(totalNll / tokenCount);
    }

    /// <summary>Perplexity from a mean per-token cross-entropy loss in nats (what a causal-LM loss reports).</summary>
    public static double FromMeanLoss(double meanLoss) => FromTotalNegativeLogLikelihood(meanLoss, 1);

    /// <summary>Bits per token for the same log-probabilities: mean NLL / ln 2.</summary>
    public static double BitsPerToken(IEnumerable<double> logProbs) => Math.Log2(FromTokenLogProbs(logProbs));

    private static void Validate(double logProb, long index)
    {
        // A tiny positive value can come from float round-off of log(1); anything larger is not a log-probability.
        if (double.IsNaN(logProb) || logProb > 1e-6)
            throw new ArgumentOutOfRangeException(nameof(logProb), logProb, $"Token {index} has log-probability {logProb}; log-probabilities must be ≤ 0.");
    }
}
