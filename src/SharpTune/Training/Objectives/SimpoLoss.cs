using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>SimPO's per-pair losses and implicit rewards.</summary>
public sealed record SimpoLossResult(Tensor Losses, Tensor ChosenRewards, Tensor RejectedRewards);

/// <summary>
/// Meng et al. 2024 (SimPO), as TRL's CPO trainer with <c>loss_type="simpo"</c>: no reference model; with length-averaged
/// log-probs p_c, p_r and h = (p_c − p_r) − γ/β, the loss is −(1−ε)·log σ(β·h) − ε·log σ(−β·h). Rewards are β·p (detached).
/// TRL adds cpo_alpha × the chosen answers' NLL (0 for SimPO proper).
/// </summary>
public static class SimpoLoss
{
    /// <param name="chosen">(P) average per-token log-probs of the chosen answers.</param>
    /// <param name="rejected">(P) average per-token log-probs of the rejected answers.</param>
    public static SimpoLossResult Compute(Tensor chosen, Tensor rejected, double beta, double gamma, double labelSmoothing = 0)
    {
        if (beta <= 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, "SimPO's beta must be positive");
        if (labelSmoothing is < 0 or >= 0.5)
            throw new ArgumentOutOfRangeException(nameof(labelSmoothing), labelSmoothing, "label_smoothing must be in [0, 0.5)");
        var h = (chosen - rejected) - gamma / beta;
        var losses = -(1 - labelSmoothing) * nn.functional.logsigmoid(beta * h) - labelSmoothing * nn.functional.logsigmoid(-beta * h);
        using var noGrad = no_grad();
        return new SimpoLossResult(losses, (beta * chosen).detach(), (beta * rejected).detach());
    }
}
