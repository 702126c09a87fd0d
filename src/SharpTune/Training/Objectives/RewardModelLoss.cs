using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training.Objectives;

/// <summary>
/// TRL's RewardTrainer loss (reward_trainer.py compute_loss, huggingface/trl@f2cd57710ae345ea6428ae95363267fcf38a3dc8):
/// −mean(logσ(r_chosen − r_rejected − margin)), plus center_rewards_coefficient · mean((r_chosen + r_rejected)²) when the
/// coefficient is set (Eisenstein et al. 2023, Eq. 2: it keeps the rewards centred on zero).
/// </summary>
public static class RewardModelLoss
{
    /// <param name="chosen">(B) rewards of the preferred texts.</param>
    /// <param name="rejected">(B) rewards of the other texts.</param>
    /// <param name="margin">(B) per-pair margins, or null (TRL: the dataset has no "margin" column).</param>
    /// <param name="centerRewardsCoefficient">TRL's center_rewards_coefficient; null (its default) adds nothing.</param>
    public static Tensor Compute(Tensor chosen, Tensor rejected, Tensor? margin, double? centerRewardsCoefficient)
    {
        using var scope = NewDisposeScope();
        var difference = chosen - rejected;
        if (margin is not null) difference = difference - margin;
        var loss = -F.logsigmoid(difference).mean();
        if (centerRewardsCoefficient is { } coefficient)
            loss = loss + coefficient * (chosen + rejected).pow(2).mean();
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>TRL's accuracy metric: the fraction of pairs whose chosen reward is strictly above the rejected one.</summary>
    public static double Accuracy(Tensor chosen, Tensor rejected)
    {
        using var scope = NewDisposeScope();
        return chosen.gt(rejected).to(ScalarType.Float32).mean().item<float>();
    }
}
