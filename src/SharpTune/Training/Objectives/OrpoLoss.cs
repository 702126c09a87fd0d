using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>ORPO's per-pair odds-ratio terms and implicit rewards.</summary>
/// <param name="Losses">(P) β·log σ(log-odds): the loss subtracts their mean from the NLL.</param>
/// <param name="LogOdds">(P) log odds(chosen) − log odds(rejected), detached.</param>
public sealed record OrpoLossResult(Tensor Losses, Tensor ChosenRewards, Tensor RejectedRewards, Tensor Ratio, Tensor LogOdds);

/// <summary>
/// Hong et al. 2024 (ORPO), as TRL's <c>odds_ratio_loss</c>: with length-averaged log-probs p_c, p_r,
/// log-odds = (p_c − p_r) − (log(1 − e^{p_c}) − log(1 − e^{p_r})); the loss is NLL(chosen) − mean(β·log σ(log-odds)).
/// Rewards are β·p (detached).
/// </summary>
public static class OrpoLoss
{
    /// <param name="chosen">(P) average per-token log-probs of the chosen answers.</param>
    /// <param name="rejected">(P) average per-token log-probs of the rejected answers.</param>
    public static OrpoLossResult Compute(Tensor chosen, Tensor rejected, double beta)
    {
        if (beta <= 0) throw new ArgumentOutOfRangeException(nameof(beta), beta, "ORPO's beta (λ) must be positive");
        var logOdds = (chosen - rejected) - (Log1mExp(chosen) - Log1mExp(rejected));   // (P)
        var ratio = nn.functional.logsigmoid(logOdds);
        var losses = beta * ratio;
        using var noGrad = no_grad();
        return new OrpoLossResult(losses, (beta * chosen).detach(), (beta * rejected).detach(), ratio.detach(), logOdds.detach());
    }

    /// <summary>log(1 − e^x) for x &lt; 0, branching at −ln 2 to avoid cancellation (TRL's log1mexp).</summary>
    public static Tensor Log1mExp(Tensor x) =>
        where(x.lt(-0.6931471805599453), (-x.exp()).log1p(), (-x.expm1()).log());
}
