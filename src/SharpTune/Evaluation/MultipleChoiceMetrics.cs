namespace SharpTune.Evaluation;

/// <summary>One question's outcome: the chosen index by log-likelihood and by length-normalised log-likelihood, and the 0/1 scores.</summary>
public sealed record MultipleChoiceOutcome(int Predicted, int PredictedNormalized, double Acc, double AccNorm, double ExactMatch);

/// <summary>
/// lm-evaluation-harness's multiple-choice metrics (api/task.py <c>ConfigurableTask.process_results</c>, output_type
/// multiple_choice; aggregation and standard error from api/metrics.py).
/// </summary>
public static class MultipleChoiceMetrics
{
    /// <summary>
    /// acc: 1 when argmax(lls) is a gold index; acc_norm: the same with each log-likelihood divided by its choice's length
    /// in characters (Python code points, without the target delimiter); exact_match: 1 when a gold choice is what greedy
    /// decoding would produce. Ties go to the first choice, as numpy's argmax.
    /// </summary>
    public static MultipleChoiceOutcome Score(IReadOnlyList<string> choices, IReadOnlyList<double> logLikelihoods, IReadOnlyList<bool> greedy, IReadOnlyList<int> gold)
    {
        if (choices.Count == 0 || logLikelihoods.Count != choices.Count || greedy.Count != choices.Count)
            throw new ArgumentException($"expected one log-likelihood and one greedy flag per choice ({choices.Count}), found {logLikelihoods.Count} and {greedy.Count}");
        var predicted = ArgMax(logLikelihoods);
        var normalized = ArgMax(logLikelihoods.Select((ll, i) => ll / PythonText.CodePointLength(choices[i])).ToArray());
        return new MultipleChoiceOutcome(predicted, normalized,
            gold.Contains(predicted) ? 1 : 0, gold.Contains(normalized) ? 1 : 0, gold.Any(g => greedy[g]) ? 1 : 0);
    }

    /// <summary>lm-eval's <c>mean</c> aggregation.</summary>
    public static double Mean(IReadOnlyList<double> values) => values.Sum() / values.Count;

    /// <summary>lm-eval's <c>mean_stderr</c>: the sample standard deviation (n − 1) over √n; NaN for fewer than 2 values.</summary>
    public static double MeanStderr(IReadOnlyList<double> values)
    {
        if (values.Count < 2) return double.NaN;
        var mean = Mean(values);
        var sampleStddev = Math.Sqrt(values.Sum(x => (x - mean) * (x - mean)) / (values.Count - 1));
        return sampleStddev / Math.Sqrt(values.Count);
    }

    // numpy's argmax: the first index of the maximum; a NaN wins as numpy treats it as the maximum.
    private static int ArgMax(IReadOnlyList<double> values)
    {
        var best = 0;
        for (var i = 0; i < values.Count; i++)
        {
            if (double.IsNaN(values[i])) return i;
            if (values[i] > values[best]) best = i;
        }
        return best;
    }
}
