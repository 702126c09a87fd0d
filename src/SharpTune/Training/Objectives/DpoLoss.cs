using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>DPO's loss variants (TRL's <c>loss_type</c>).</summary>
public enum DpoLossType
{
    /// <summary>Rafailov et al. 2023: −log σ(β·x), with optional label smoothing (conservative DPO).</summary>
    Sigmoid,
    /// <summary>Azar et al. 2023 (IPO): (x − 1/(2β))², on length-averaged log-probs.</summary>
    Ipo,
}

/// <summary>Per-pair DPO losses and implicit rewards.</summary>
public sealed record DpoLossResult(Tensor Losses, Tensor ChosenRewards, Tensor RejectedRewards);

/// <summary>
/// The preference losses on sequence log-probs, with x = (π(chosen) − ref(chosen)) − (π(rejected) − ref(rejected)):
/// sigmoid −(1−ε)·log σ(βx) − ε·log σ(−βx) and IPO (x − 1/(2β))². The implicit rewards are β·(π − ref), detached.
/// </summary>
public static class DpoLoss
{
    public static DpoLossType ParseType(string name) => name.Trim().ToLowerInvariant() switch
    {
        "sigmoid" => DpoLossType.Sigmoid,
        "ipo" => DpoLossType.Ipo,
        _ => throw new ArgumentException($"unknown DPO loss_type '{name}' (choose sigmoid or ipo)"),
    };

    /// <param name="policyChosen">(P) policy log-probs of the chosen completions.</param>
    /// <param name="policyRejected">(P) policy log-probs of the rejected completions.</param>
    /// <param name="referenceChosen">(P) reference log-probs of the chosen completions (no gradient).</param>
    /// <param name="referenceRejected">(P) reference log-probs of the rejected completions (no gradient).</param>
    public static DpoLossResult Compute(Tensor policyChosen, Tensor policyRejected, Tensor referenceChosen, Tensor referenceRejected,
        double beta, double labelSmoothing = 0, DpoLossType type = DpoLossType.Sigmoid)
    {
        if (beta <= 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, "beta must be positive");
        if (labelSmoothing is < 0 or >= 0.5)
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "label_smoothing must be in [0, 0.5)");
        var x = (policyChosen - referenceChosen) - (policyRejected - referenceRejected);   // (P)
        var losses = type switch
        {
            DpoLossType.Sigmoid => -(1 - labelSmoothing) * nn.functional.logsigmoid(beta * x)
                                   - labelSmoothing * nn.functional.logsigmoid(-beta * x),
            DpoLossType.Ipo => (x - 1 / (2 * beta)).square(),
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        using var noGrad = no_grad();
        return new DpoLossResult(losses, (beta * (policyChosen - referenceChosen)).detach(),
            (beta * (policyRejected - referenceRejected)).detach());
    }
}
