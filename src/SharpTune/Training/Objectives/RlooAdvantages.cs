namespace SharpTune.Training.Objectives;

/// <summary>
/// RLOO's advantages, as TRL's <c>RLOOTrainer._generate_and_score_completions</c> (huggingface/trl@f2cd577,
/// trl/trainer/rloo_trainer.py): each completion's weighted reward (NaN when no function scored it), clipped to
/// reward_clip_range, minus β times its KL to the reference summed over its tokens; then the REINFORCE leave-one-out
/// baseline, the mean reward of its scorable siblings: b_i = (Σ_group r − r_i) / (scorable in group − 1), and
/// A_i = r_i − b_i. A completion no function scored, or the only scorable one of its group, gets NaN there (0/0); with
/// normalize_advantages the others are centred and scaled over the batch (A − mean)/(std + 1e-4), and the NaNs become 0.
/// </summary>
public static class RlooAdvantages
{
    /// <summary>
    /// TRL's RLOO KL (Ahmadian et al. 2024's first-order log ratio, which may be negative): per completion,
    /// Σ_t (log π_old − log π_ref) over its loss tokens (none for a truncated one when <paramref name="maskTruncated"/>),
    /// and the batch's per-token mean that TRL logs as <c>kl</c>.
    /// </summary>
    public static (double[] PerSequence, double MeanPerToken) SequenceKl(IReadOnlyList<GrpoRow> rows, bool maskTruncated)
    {
        var perSequence = new double[rows.Count];
        double tokens = 0;
        for (var i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            if (maskTruncated && row.Truncated) continue;
            if (row.OldLogProbs is null || row.ReferenceLogProbs is null)
                throw new ArgumentException("the RLOO KL needs each row's old and reference log-probs", nameof(rows));
            for (var k = 0; k < row.CompletionIds.Length; k++) perSequence[i] += (double)row.OldLogProbs[k] - row.ReferenceLogProbs[k];
            tokens += row.CompletionIds.Length;
        }
        return (perSequence, perSequence.Sum() / Math.Max(1.0, tokens));
    }

    /// <param name="scores">[N, F] per completion and function; NaN where the function does not apply (TRL's None).</param>
    /// <param name="weights">(F) weight of each function.</param>
    /// <param name="groupSize">Completions per prompt, G ≥ 2; rows g·G … g·G+G−1 answer prompt g.</param>
    /// <param name="sequenceKl">(N) Σ_t (log π_old − log π_ref) over each completion's loss tokens; may be null only when β = 0.</param>
    /// <param name="beta">The KL coefficient β taken from the reward.</param>
    /// <param name="clipRange">(min, max) the summed reward is clipped to, or null.</param>
    /// <param name="normalize">TRL's normalize_advantages.</param>
    /// <returns>
    /// The advantages, with the statistics TRL logs: reward and reward_std of the plain weighted rewards (before clipping
    /// and the KL penalty), frac_reward_zero_std of the penalised ones.
    /// </returns>
    public static GrpoAdvantageResult Compute(double[,] scores, IReadOnlyList<double> weights, int groupSize, IReadOnlyList<double>? sequenceKl,
        double beta, (double Min, double Max)? clipRange, bool normalize)
    {
        var raw = GrpoAdvantages.WeightedRewards(scores, weights, groupSize);
        var n = raw.Length;
        if (beta != 0 && sequenceKl is null)
            throw new ArgumentException($"β = {beta} takes the KL from the reward, but no KL values were given (pass β = 0 where there is no reference)", nameof(sequenceKl));
        if (sequenceKl is not null && sequenceKl.Count != n)
            throw new ArgumentException($"{n} completions but {sequenceKl.Count} KL values", nameof(sequenceKl));
        var rewards = new double[n];
        for (var i = 0; i < n; i++)
        {
            var r = raw[i];
            // torch.clamp keeps a NaN (an unscorable completion) NaN; so does Math.Clamp.
            if (clipRange is { } range) r = Math.Clamp(r, range.Min, range.Max);
            if (beta != 0) r -= beta * sequenceKl![i];
            rewards[i] = r;
        }
        var advantages = new double[n];
        for (var g = 0; g < n / groupSize; g++)
        {
            var group = rewards.AsSpan(g * groupSize, groupSize);
            double sum = 0;
            var scorable = 0;
            foreach (var r in group)
            {
                if (double.IsNaN(r)) continue;
                sum += r;
                scorable++;
            }
            for (var k = 0; k < groupSize; k++)
            {
                var i = g * groupSize + k;
                advantages[i] = rewards[i] - (sum - rewards[i]) / (scorable - 1);   // NaN for an unscorable row or a lone scorable one
            }
        }
        if (normalize)
        {
            var mean = GrpoAdvantages.NanMean(advantages);
            var std = GrpoAdvantages.NanStd(advantages);
            for (var i = 0; i < n; i++) advantages[i] = (advantages[i] - mean) / (std + 1e-4);
        }
        for (var i = 0; i < n; i++)
            if (double.IsNaN(advantages[i])) advantages[i] = 0;   // torch.nan_to_num: no signal from the unscorable
        return new GrpoAdvantageResult(raw, advantages, GrpoAdvantages.NanMean(raw), GrpoAdvantages.NanStd(raw),
            GrpoAdvantages.FracZeroStd(GrpoAdvantages.GroupStds(rewards, groupSize)));   // over the penalised group rewards
    }
}
