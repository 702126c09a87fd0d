namespace SharpTune.Training;

/// <summary>
/// What RLOO adds to the GRPO-family loop it shares (<see cref="GrpoSettings.Rloo"/>), with TRL's RLOOConfig defaults
/// (huggingface/trl@f2cd577, trl/trainer/rloo_config.py): β = 0.05 taken from the reward as a sequence KL penalty, no
/// advantage normalisation, no reward clipping.
/// </summary>
/// <param name="Beta">KL coefficient: reward − β·Σ_t (log π_old − log π_ref); 0 loads no reference.</param>
/// <param name="NormalizeAdvantages">Normalise the advantages over the generation batch (mean 0, std 1).</param>
/// <param name="RewardClipRange">(min, max) the summed reward is clipped to, or null.</param>
public sealed record RlooSettings(double Beta = RlooSettings.DefaultBeta, bool NormalizeAdvantages = false, (double Min, double Max)? RewardClipRange = null)
{
    /// <summary>TRL's RLOOConfig num_generations default.</summary>
    public const int DefaultNumGenerations = 2;

    /// <summary>TRL's RLOOConfig beta default: the KL coefficient taken from the reward.</summary>
    public const double DefaultBeta = 0.05;

    /// <summary>Validates RLOO's own options and refuses GRPO's that RLOO would ignore, naming them.</summary>
    internal static RlooSettings From(TrainingOptions o)
    {
        ObjectiveSettingRefusals.RefuseIgnored("rloo",
            ("loss_type (--loss-type): RLOO's loss is the clipped surrogate on the sequence log-probability ratio", o.LossType is not null),
            ("scale_rewards (--scale-rewards): RLOO's advantages are leave-one-out; normalize_advantages (--normalize-advantages) scales them",
                GrpoSettings.ScaleRewardsGiven(o)));
        var beta = o.Beta ?? DefaultBeta;
        if (!double.IsFinite(beta) || beta < 0) throw new ArgumentException($"beta (--beta) must be ≥ 0, found {beta}");
        (double, double)? clip = null;
        if (o.RewardClipRange is { } range)
        {
            if (range.Count != 2 || !double.IsFinite(range[0]) || !double.IsFinite(range[1]) || range[0] > range[1])
                throw new ArgumentException($"reward_clip_range (--reward-clip-range) must be two numbers [min, max] with min ≤ max, found [{string.Join(", ", range)}]");
            clip = (range[0], range[1]);
        }
        return new RlooSettings(beta, o.NormalizeAdvantages, clip);
    }

    /// <summary>Refuses RLOO's own settings under another objective, where they would silently do nothing.</summary>
    public static void RefuseOutsideRloo(TrainingOptions o, string objective) => ObjectiveSettingRefusals.RefuseOutside("rloo", objective,
        ("normalize_advantages (--normalize-advantages)", o.NormalizeAdvantages), ("reward_clip_range (--reward-clip-range)", o.RewardClipRange is not null));
}
