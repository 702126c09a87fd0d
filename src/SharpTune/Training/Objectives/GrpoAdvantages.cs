namespace SharpTune.Training.Objectives;

/// <summary>How GRPO scales the group-centred rewards (TRL's <c>scale_rewards</c>).</summary>
public enum RewardScaling
{
    /// <summary>Divide by the group's reward standard deviation (the GRPO paper).</summary>
    Group,
    /// <summary>Divide by the whole batch's reward standard deviation (more robust, Hu et al. 2025).</summary>
    Batch,
    /// <summary>Centre only (Dr. GRPO: scaling by the std biases towards easy or hard questions).</summary>
    None,
}

/// <summary>Advantages of one generation batch and the statistics TRL logs about them.</summary>
/// <param name="Rewards">(N) weighted reward sum per completion; NaN for a completion no function scored.</param>
/// <param name="Advantages">(N) per completion, 0 for the unscored.</param>
/// <param name="FracRewardZeroStd">Share of completions whose group (or batch) std is zero: they carry no signal.</param>
public sealed record GrpoAdvantageResult(double[] Rewards, double[] Advantages, double RewardMean, double RewardStd, double FracRewardZeroStd);

/// <summary>
/// TRL's "sum then normalise" advantages: each completion's reward is the weighted sum of its reward functions' scores
/// (a function that returned nothing for it is skipped, as <c>nansum</c>), centred on its group's mean and divided by
/// the std (+1e-4, so a zero std never divides). Completions are grouped consecutively: rows g·G … g·G+G−1 answer prompt g.
/// </summary>
public static class GrpoAdvantages
{
    public static RewardScaling ParseScaling(string name) => name.Trim().ToLowerInvariant() switch
    {
        "group" or "true" => RewardScaling.Group,
        "batch" => RewardScaling.Batch,
        "none" or "false" => RewardScaling.None,
        _ => throw new ArgumentException($"unknown scale_rewards '{name}' (choose group, batch or none)"),
    };

    /// <param name="scores">[N, F] per completion and function; NaN where the function does not apply (TRL's None).</param>
    /// <param name="weights">(F) weight of each function.</param>
    /// <param name="groupSize">Completions per prompt, G ≥ 2.</param>
    public static GrpoAdvantageResult Compute(double[,] scores, IReadOnlyList<double> weights, int groupSize, RewardScaling scaling)
    {
        var n = scores.GetLength(0);
        var rewards = WeightedRewards(scores, weights, groupSize);
        var groupMean = new double[n];
        for (var g = 0; g < n / groupSize; g++)
        {
            var mean = NanMean(rewards.AsSpan(g * groupSize, groupSize));
            for (var k = 0; k < groupSize; k++) groupMean[g * groupSize + k] = mean;
        }
        var std = scaling == RewardScaling.Batch ? Enumerable.Repeat(NanStd(rewards), n).ToArray() : GroupStds(rewards, groupSize);
        var advantages = new double[n];
        for (var i = 0; i < n; i++)
        {
            var a = rewards[i] - groupMean[i];
            if (scaling != RewardScaling.None) a /= std[i] + 1e-4;
            advantages[i] = double.IsNaN(a) ? 0 : a;
        }
        return new GrpoAdvantageResult(rewards, advantages, NanMean(rewards), NanStd(rewards), FracZeroStd(std));
    }

    /// <summary>Each completion's group reward std (TRL's <c>nanstd</c> over the group, repeated G times).</summary>
    internal static double[] GroupStds(double[] rewards, int groupSize)
    {
        var std = new double[rewards.Length];
        for (var g = 0; g < rewards.Length / groupSize; g++)
            Array.Fill(std, NanStd(rewards.AsSpan(g * groupSize, groupSize)), g * groupSize, groupSize);
        return std;
    }

    /// <summary>
    /// TRL's frac_reward_zero_std: the share of completions whose std is <c>torch.isclose(std, 0)</c>, |std| ≤ 1e-8
    /// (atol) — a NaN std (a group with fewer than 2 scored) is not close to 0.
    /// </summary>
    internal static double FracZeroStd(double[] stds) => (double)stds.Count(s => Math.Abs(s) <= 1e-8) / stds.Length;

    /// <summary>
    /// Each completion's reward: the weighted sum of the functions that scored it (TRL's <c>nansum</c> over the weighted
    /// columns), NaN when none did (TRL's unscorable rows); checks that the rows split into groups of <paramref name="groupSize"/>.
    /// </summary>
    /// <param name="scores">[N, F] per completion and function; NaN where the function does not apply (TRL's None).</param>
    public static double[] WeightedRewards(double[,] scores, IReadOnlyList<double> weights, int groupSize)
    {
        var n = scores.GetLength(0);
        var f = scores.GetLength(1);
        if (weights.Count != f) throw new ArgumentException($"{f} reward columns but {weights.Count} weights", nameof(weights));
        if (groupSize < 2) throw new ArgumentOutOfRangeException(nameof(groupSize), groupSize, "a group needs at least 2 completions");
        if (n % groupSize != 0) throw new ArgumentException($"{n} completions do not split into groups of {groupSize}", nameof(scores));
        var rewards = new double[n];
        for (var i = 0; i < n; i++)
        {
            double sum = 0;
            var scored = false;
            for (var j = 0; j < f; j++)
            {
                if (double.IsNaN(scores[i, j])) continue;
                sum += scores[i, j] * weights[j];
                scored = true;
            }
            rewards[i] = scored ? sum : double.NaN;
        }
        return rewards;
    }

    /// <summary>Mean of the non-NaN values (NaN when there are none), as torch.nanmean.</summary>
    public static double NanMean(ReadOnlySpan<double> values)
    {
        double sum = 0;
        var count = 0;
        foreach (var v in values)
        {
            if (double.IsNaN(v)) continue;
            sum += v;
            count++;
        }
        return count == 0 ? double.NaN : sum / count;
    }

    /// <summary>Unbiased (Bessel-corrected) std of the non-NaN values, as TRL's nanstd; NaN for fewer than 2.</summary>
    public static double NanStd(ReadOnlySpan<double> values)
    {
        var mean = NanMean(values);
        double squares = 0;
        var count = 0;
        foreach (var v in values)
        {
            if (double.IsNaN(v)) continue;
            squares += (v - mean) * (v - mean);
            count++;
        }
        return count < 2 ? double.NaN : Math.Sqrt(squares / (count - 1));
    }
}
