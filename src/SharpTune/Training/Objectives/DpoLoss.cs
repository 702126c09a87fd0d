using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>DPO's loss variants (TRL's <c>loss_type</c>).</summary>
public enum DpoLossType
{
    /// <summary>
    /// Rafailov et al. 2023: −log σ(β·x); with label smoothing ε, conservative DPO (Mitchell 2023, and TRL's sigmoid
    /// loss before its DPO refactor): −(1−ε)·log σ(βx) − ε·log σ(−βx).
    /// </summary>
    Sigmoid,
    /// <summary>Azar et al. 2023 (IPO): (x − 1/(2β))², on length-averaged log-probs.</summary>
    Ipo,
    /// <summary>Zhao et al. 2023 (SLiC): max(0, 1 − β·x).</summary>
    Hinge,
    /// <summary>
    /// Chowdhury et al. 2024 (robust DPO), unbiased under labels flipped with probability ε = label_smoothing:
    /// (−(1−ε)·log σ(βx) + ε·log σ(−βx)) / (1 − 2ε).
    /// </summary>
    Robust,
}

/// <summary>Per-pair DPO losses and implicit rewards.</summary>
public sealed record DpoLossResult(Tensor Losses, Tensor ChosenRewards, Tensor RejectedRewards);

/// <summary>
/// TRL's preference losses on sequence log-probs, with x = (π(chosen) − ref(chosen)) − (π(rejected) − ref(rejected)):
/// sigmoid −log σ(βx), IPO (x − 1/(2β))², hinge max(0, 1 − βx) and robust (−(1−ε)·log σ(βx) + ε·log σ(−βx)) / (1 − 2ε).
/// Label smoothing ε applies to robust, as in TRL, and to sigmoid as conservative DPO −(1−ε)·log σ(βx) − ε·log σ(−βx),
/// which TRL's sigmoid loss was until its DPO refactor (huggingface/trl#3906; TRL now ignores ε there, so a smoothing
/// asked for would change nothing); ε &gt; 0 with IPO or hinge, which never smoothed, is refused rather than ignored.
/// The implicit rewards are β·(π − ref), detached.
/// </summary>
public static class DpoLoss
{
    public static DpoLossType ParseType(string name) => name.Trim().ToLowerInvariant() switch
    {
        "sigmoid" => DpoLossType.Sigmoid,
        "ipo" => DpoLossType.Ipo,
        "hinge" => DpoLossType.Hinge,
        "robust" => DpoLossType.Robust,
        _ => throw new ArgumentException($"unknown DPO loss_type '{name}' (choose sigmoid, ipo, hinge or robust)"),
    };

    /// <summary>Checks that <paramref name="labelSmoothing"/> suits <paramref name="type"/>; throws naming label_smoothing.</summary>
    public static void ValidateLabelSmoothing(double labelSmoothing, DpoLossType type)
    {
        if (labelSmoothing is < 0 or >= 0.5)
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "label_smoothing must be in [0, 0.5)");
        if (labelSmoothing != 0 && type is not (DpoLossType.Robust or DpoLossType.Sigmoid))
            throw new ArgumentException($"label_smoothing = {labelSmoothing} applies to loss_type sigmoid (conservative DPO) and robust, " +
                $"not {type.ToString().ToLowerInvariant()}; use one of those or label_smoothing 0", nameof(labelSmoothing));
    }

    /// <param name="policyChosen">(P) policy log-probs of the chosen completions.</param>
    /// <param name="policyRejected">(P) policy log-probs of the rejected completions.</param>
    /// <param name="referenceChosen">(P) reference log-probs of the chosen completions (no gradient).</param>
    /// <param name="referenceRejected">(P) reference log-probs of the rejected completions (no gradient).</param>
    public static DpoLossResult Compute(Tensor policyChosen, Tensor policyRejected, Tensor referenceChosen, Tensor referenceRejected,
        double beta, double labelSmoothing = 0, DpoLossType type = DpoLossType.Sigmoid)
    {
        if (beta <= 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, "beta must be positive");
        ValidateLabelSmoothing(labelSmoothing, type);
        var x = (policyChosen - referenceChosen) - (policyRejected - referenceRejected);   // (P)
        var losses = type switch
        {
            DpoLossType.Sigmoid => -(1 - labelSmoothing) * nn.functional.logsigmoid(beta * x)
                                   - labelSmoothing * nn.functional.logsigmoid(-beta * x),
            DpoLossType.Ipo => (x - 1 / (2 * beta)).square(),
            DpoLossType.Hinge => nn.functional.relu(1 - beta * x),
            DpoLossType.Robust => (-(1 - labelSmoothing) * nn.functional.logsigmoid(beta * x)
                                   + labelSmoothing * nn.functional.logsigmoid(-beta * x)) / (1 - 2 * labelSmoothing),
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        using var noGrad = no_grad();
        return new DpoLossResult(losses, (beta * (policyChosen - referenceChosen)).detach(),
            (beta * (policyRejected - referenceRejected)).detach());
    }
}
