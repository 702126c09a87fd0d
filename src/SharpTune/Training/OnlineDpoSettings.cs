using SharpTune.Training.Objectives;

namespace SharpTune.Training;

/// <summary>
/// What online DPO adds to the GRPO-family loop it shares (<see cref="GrpoSettings.OnlineDpo"/>), with TRL's
/// OnlineDPOConfig defaults (huggingface/trl@f2cd577, trl/experimental/online_dpo/online_dpo_config.py): β = 0.1 (or one
/// β per epoch, the last kept for later epochs), loss_type sigmoid, no missing_eos_penalty, max_new_tokens 64. Each prompt is answered
/// twice; the better-scored completion is chosen, the other rejected (a tie chooses the first).
/// </summary>
/// <param name="Betas">
/// β per epoch; the last holds for the epochs after it. One value: β throughout. TRL's beta may be a list, but at f2cd577
/// its <c>beta</c> property indexes it with the float <c>state.epoch</c> and fails (huggingface/trl#6806); this is the
/// meaning its fix gives it (<c>int(epoch)</c>, huggingface/trl#7327).
/// </param>
/// <param name="LossType">sigmoid (DPO) or ipo.</param>
/// <param name="MissingEosPenalty">Subtracted from the score of a completion that ends without an EOS token; null = none.</param>
public sealed record OnlineDpoSettings(IReadOnlyList<double> Betas, DpoLossType LossType = DpoLossType.Sigmoid, double? MissingEosPenalty = null)
{
    /// <summary>TRL's OnlineDPOConfig beta default.</summary>
    public const double DefaultBeta = 0.1;

    /// <summary>TRL's OnlineDPOConfig temperature default (sampling; the log-probs are the model's own, unscaled).</summary>
    public const double DefaultTemperature = 0.9;

    /// <summary>TRL's OnlineDPOConfig max_new_tokens default: the longest sampled completion, in tokens.</summary>
    public const int DefaultMaxNewTokens = 64;

    /// <summary>Completions per prompt: a pair.</summary>
    public const int Generations = 2;

    /// <summary>β in epoch <paramref name="epoch"/> (0-based, whole): that epoch's entry, or the last one past the list (TRL's beta property as fixed by huggingface/trl#7327).</summary>
    public double BetaAt(int epoch) => Betas[Math.Clamp(epoch, 0, Betas.Count - 1)];

    /// <summary>Validates online DPO's options and refuses GRPO's and RLOO's that it would ignore, naming them.</summary>
    internal static OnlineDpoSettings From(TrainingOptions o)
    {
        ObjectiveSettingRefusals.RefuseIgnored("online-dpo",
            ("max_completion_length (--max-completion-length): online DPO's completion limit is max_new_tokens (--max-new-tokens), TRL's OnlineDPOConfig name",
                o.MaxCompletionLength != new TrainingOptions().MaxCompletionLength),
            ("num_iterations (--num-iterations): online DPO makes one update per sampled batch", o.NumIterations != 1),
            ("epsilon (--epsilon) and epsilon_high (--epsilon-high): online DPO's loss has no ratio to clip", o.Epsilon != 0.2 || o.EpsilonHigh is not null),
            ("mask_truncated_completions (--mask-truncated-completions): online DPO trains on every pair; missing_eos_penalty (--missing-eos-penalty) lowers a truncated completion's score",
                o.MaskTruncatedCompletions),
            ("label_smoothing (--label-smoothing): online DPO's sigmoid and ipo losses take none", o.LabelSmoothing != 0),
            ("precompute_ref_log_probs (--precompute-ref-log-probs): online DPO samples new completions every step; the reference scores them as they are sampled",
                o.PrecomputeRefLogProbs));
        if (o.Beta is not null && o.BetaPerEpoch is not null)
            throw new ArgumentException("beta (--beta) and beta_per_epoch (--beta-per-epoch) are both given; give one β, or one per epoch");
        var betas = o.BetaPerEpoch ?? [o.Beta ?? DefaultBeta];
        if (betas.Count == 0) throw new ArgumentException("beta_per_epoch (--beta-per-epoch) is empty; give at least one β");
        foreach (var beta in betas)
            if (!double.IsFinite(beta) || beta <= 0)
                throw new ArgumentException($"{(o.BetaPerEpoch is null ? "beta (--beta)" : "beta_per_epoch (--beta-per-epoch)")} must be positive, found {beta}");
        var type = (o.LossType ?? "sigmoid").Trim().ToLowerInvariant() switch
        {
            "sigmoid" => DpoLossType.Sigmoid,
            "ipo" => DpoLossType.Ipo,
            var other => throw new ArgumentException($"online-dpo loss_type (--loss-type) must be sigmoid or ipo (TRL's OnlineDPOTrainer), found '{other}'"),
        };
        if (o.MissingEosPenalty is { } penalty && (!double.IsFinite(penalty) || penalty < 0))
            throw new ArgumentException($"missing_eos_penalty (--missing-eos-penalty) must be a number of at least 0, found {penalty}");
        return new OnlineDpoSettings(betas.ToArray(), type, o.MissingEosPenalty);
    }

    /// <summary>Refuses online DPO's own settings under another objective, where they would silently do nothing.</summary>
    internal static void RefuseOutsideOnlineDpo(TrainingOptions o, string objective) => ObjectiveSettingRefusals.RefuseOutside("online-dpo", objective,
        ("missing_eos_penalty (--missing-eos-penalty)", o.MissingEosPenalty is not null), ("beta_per_epoch (--beta-per-epoch)", o.BetaPerEpoch is not null));
}
