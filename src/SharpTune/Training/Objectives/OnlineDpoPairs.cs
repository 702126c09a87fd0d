namespace SharpTune.Training.Objectives;

/// <summary>
/// How online DPO turns a prompt's two scored completions into a preference pair, as TRL's OnlineDPOTrainer.training_step
/// (huggingface/trl@f2cd577, trl/experimental/online_dpo/online_dpo_trainer.py): a completion's score is the weighted sum
/// of its reward functions' scores, a function that returned nothing for it skipped (<c>nansum</c>: none at all scores 0),
/// less missing_eos_penalty when it ends without EOS; the higher score is chosen, and a tie chooses the first
/// (<c>mask = first_half &gt;= second_half</c>). Rows 2p and 2p + 1 are prompt p's two completions.
/// </summary>
public static class OnlineDpoPairs
{
    /// <param name="scores">[N, F] per completion and function; NaN where the function gave no score (TRL's None).</param>
    /// <param name="weights">(F) weight of each function.</param>
    /// <param name="containsEos">(N) whether each completion ended with an EOS token.</param>
    /// <param name="missingEosPenalty">Subtracted from a completion without EOS; null = none.</param>
    public static double[] Scores(double[,] scores, IReadOnlyList<double> weights, IReadOnlyList<bool> containsEos, double? missingEosPenalty)
    {
        // GRPO's weighted sum over a prompt's group of two; a completion no function scored (NaN there) scores 0 here, as nansum.
        var total = GrpoAdvantages.WeightedRewards(scores, weights, OnlineDpoSettings.Generations);
        if (containsEos.Count != total.Length) throw new ArgumentException($"{total.Length} completions but {containsEos.Count} EOS flags", nameof(containsEos));
        for (var i = 0; i < total.Length; i++)
        {
            if (double.IsNaN(total[i])) total[i] = 0;
            if (missingEosPenalty is { } penalty && !containsEos[i]) total[i] -= penalty;
        }
        return total;
    }

    /// <summary>Each prompt's (chosen, rejected) row indices: the higher score chosen, the first on a tie.</summary>
    public static (int Chosen, int Rejected)[] Select(IReadOnlyList<double> scores)
    {
        if (scores.Count % 2 != 0) throw new ArgumentException($"{scores.Count} completions do not split into pairs", nameof(scores));
        var pairs = new (int, int)[scores.Count / 2];
        for (var p = 0; p < pairs.Length; p++)
            pairs[p] = scores[2 * p] >= scores[2 * p + 1] ? (2 * p, 2 * p + 1) : (2 * p + 1, 2 * p);
        return pairs;
    }
}
