using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>KTO's loss variants (TRL's <c>loss_type</c>).</summary>
public enum KtoLossType
{
    /// <summary>Ethayarajh et al. 2024, eq. 7: against the batch KL reference point.</summary>
    Kto,
    /// <summary>D'Oosterlinck et al. 2024 (APO-zero, unpaired): no KL term.</summary>
    ApoZeroUnpaired,
}

/// <summary>KTO's weighted per-example losses (desirable first, then undesirable) and rewards.</summary>
public sealed record KtoLossResult(Tensor Losses, Tensor ChosenRewards, Tensor RejectedRewards, Tensor Kl);

/// <summary>
/// TRL's <c>kto_loss</c>. With log-ratios x = log π(y|x) − log π_ref(y|x) (summed over completion tokens) and the
/// reference point z = max(0, mean(π_KL − ref_KL)) over mismatched prompt/completion pairs (no gradient):
/// desirable 1 − σ(β(x − z)), undesirable 1 − σ(β(z − x)); APO-zero: 1 − σ(βx) and σ(βx). The loss is the mean of
/// desirable_weight × desirable losses and undesirable_weight × undesirable losses.
/// </summary>
public static class KtoLoss
{
    public static KtoLossType ParseType(string name) => name.Trim().ToLowerInvariant() switch
    {
        "kto" => KtoLossType.Kto,
        "apo_zero_unpaired" => KtoLossType.ApoZeroUnpaired,
        _ => throw new ArgumentException($"unknown KTO loss_type '{name}' (choose kto or apo_zero_unpaired)"),
    };

    /// <param name="policyChosen">(C) policy log-probs of the desirable completions.</param>
    /// <param name="policyRejected">(R) policy log-probs of the undesirable completions.</param>
    /// <param name="policyKl">(B) policy log-probs of the mismatched (KL) completions; ignored by APO-zero.</param>
    public static KtoLossResult Compute(Tensor policyChosen, Tensor policyRejected, Tensor? policyKl,
        Tensor referenceChosen, Tensor referenceRejected, Tensor? referenceKl, double beta,
        double desirableWeight = 1.0, double undesirableWeight = 1.0, KtoLossType type = KtoLossType.Kto)
    {
        if (beta <= 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, "KTO's beta must be positive");
        Tensor kl;
        using (no_grad())
        {
            kl = type == KtoLossType.Kto
                ? (policyKl! - referenceKl!).mean().detach().clamp_min(0)
                : zeros(1, device: policyChosen.device).sum();
        }
        var chosenRatio = policyChosen - referenceChosen;
        var rejectedRatio = policyRejected - referenceRejected;
        var chosenLosses = type == KtoLossType.Kto ? 1 - (beta * (chosenRatio - kl)).sigmoid() : 1 - (beta * chosenRatio).sigmoid();
        var rejectedLosses = type == KtoLossType.Kto ? 1 - (beta * (kl - rejectedRatio)).sigmoid() : (beta * rejectedRatio).sigmoid();
        var losses = cat([desirableWeight * chosenLosses, undesirableWeight * rejectedLosses], 0);
        using var noGrad = no_grad();
        return new KtoLossResult(losses, (beta * chosenRatio).detach(), (beta * rejectedRatio).detach(), kl);
    }
}
