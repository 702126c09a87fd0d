namespace SharpTune.Training.Rewards;

/// <summary>A reward function failed (threw, or returned NaN or an infinity); no update was made for the step.</summary>
public sealed class RewardFunctionException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Runs every reward function over a generation batch and checks what comes back.</summary>
public static class RewardScorer
{
    /// <summary>
    /// [N, F] scores, NaN where a function returned null (not applicable). Any exception, NaN or infinity becomes a
    /// <see cref="RewardFunctionException"/> naming the function, the sample's row and the completion.
    /// </summary>
    public static double[,] Score(IReadOnlyList<WeightedReward> rewards, IReadOnlyList<RewardSample> samples, int step,
        CancellationToken cancellationToken = default)
    {
        var scores = new double[samples.Count, rewards.Count];
        for (var f = 0; f < rewards.Count; f++)
        {
            var function = rewards[f].Function;
            IReadOnlyList<double?> values;
            try
            {
                values = function.ScoreAsync(samples, cancellationToken).GetAwaiter().GetResult();
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { throw; }
            catch (Exception e)
            {
                var sample = (e as RewardFunctionException) is null ? FailingSample(function, samples, cancellationToken) : null;
                throw new RewardFunctionException(
                    $"reward function '{function.Name}' failed at step {step}" + (sample is null ? "" : $" on {Describe(sample)}") +
                    $": {e.Message}. No update was made for this step.", e);
            }
            if (values.Count != samples.Count)
                throw new RewardFunctionException($"reward function '{function.Name}' returned {values.Count} scores for {samples.Count} completions at step {step}");
            for (var i = 0; i < samples.Count; i++)
            {
                var value = values[i];
                if (value is { } v && !double.IsFinite(v))
                    throw new RewardFunctionException(
                        $"reward function '{function.Name}' returned {v} at step {step} for {Describe(samples[i])}. No update was made for this step.");
                scores[i, f] = value ?? double.NaN;
            }
        }
        return scores;
    }

    /// <summary>Finds the first sample the function throws on alone, so the error can name it.</summary>
    private static RewardSample? FailingSample(IRewardFunction function, IReadOnlyList<RewardSample> samples, CancellationToken cancellationToken)
    {
        foreach (var sample in samples)
        {
            try { function.ScoreAsync([sample], cancellationToken).GetAwaiter().GetResult(); }
            catch (Exception) { return sample; }
        }
        return null;
    }

    /// <summary>"completion 5 (prompt at data.jsonl:3 \"…\"): \"…\"".</summary>
    public static string Describe(RewardSample sample) =>
        $"completion {sample.Index} (prompt" + (sample.Location.Length > 0 ? $" at {sample.Location}" : "") +
        $" \"{Clip(sample.Prompt)}\"): \"{Clip(sample.Completion)}\"";

    private static string Clip(string text)
    {
        var oneLine = text.Replace('\n', ' ');
        return oneLine.Length > 60 ? oneLine[..60] + "…" : oneLine;
    }
}
