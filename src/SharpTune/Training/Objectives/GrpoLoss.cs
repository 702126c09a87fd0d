using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>How GRPO's per-token losses are averaged (TRL's <c>loss_type</c>).</summary>
public enum GrpoLossType
{
    /// <summary>Shao et al. 2024: each completion's token mean, then the mean over completions (favours short answers).</summary>
    Grpo,
    /// <summary>Liu et al. 2025 (Dr. GRPO): the token sum over completions × max_completion_length, a constant.</summary>
    DrGrpo,
    /// <summary>Yu et al. 2025 (DAPO): the token sum over the tokens of the whole generation batch (TRL's default).</summary>
    Dapo,
    /// <summary>The token mean over the micro-batch.</summary>
    Bnpo,
}

/// <summary>GRPO's loss hyper-parameters (TRL's <c>epsilon</c>, <c>epsilon_high</c>, <c>beta</c>, <c>loss_type</c>).</summary>
public sealed record GrpoLossSettings(GrpoLossType LossType = GrpoLossType.Dapo, double Epsilon = 0.2, double? EpsilonHigh = null,
    double Beta = 0.0, int MaxCompletionLength = 512)
{
    /// <summary>The upper clip ε (DAPO's clip-higher), <see cref="Epsilon"/> when not set.</summary>
    public double EpsilonUpper => EpsilonHigh ?? Epsilon;

    public static GrpoLossType ParseType(string name) => name.Trim().ToLowerInvariant() switch
    {
        "grpo" => GrpoLossType.Grpo,
        "dr_grpo" or "dr-grpo" => GrpoLossType.DrGrpo,
        "dapo" => GrpoLossType.Dapo,
        "bnpo" => GrpoLossType.Bnpo,
        _ => throw new ArgumentException($"unknown GRPO loss_type '{name}' (choose grpo, dr_grpo, dapo or bnpo)"),
    };
}

/// <summary>
/// One micro-batch's GRPO loss (already divided as TRL divides it, so the step's gradient is the sum of the micro-batch
/// gradients) and the masked sums its metrics are made of.
/// </summary>
public sealed record GrpoLossResult(Tensor Loss, Tensor KlSum, Tensor LowClippedSum, Tensor HighClippedSum, Tensor RegionClippedSum,
    Tensor TokenCount);

/// <summary>
/// TRL's GRPO objective on per-token log-probabilities. With ratio r = exp(log π − log π_old) per token and advantage A of
/// its completion: −min(r·A, clip(r, 1−ε, 1+ε_high)·A) + β·k3, where k3 = exp(ref − log π) − (ref − log π) − 1 is
/// Schulman's unbiased, always-positive KL estimator. Averaged per <see cref="GrpoLossType"/>.
/// </summary>
public static class GrpoLoss
{
    /// <param name="logProbs">(B, T) policy log-probs of each completion token (gradient flows here).</param>
    /// <param name="oldLogProbs">(B, T) log-probs when the completions were sampled, or null for μ = 1 (ratio 1, as TRL).</param>
    /// <param name="referenceLogProbs">(B, T) reference log-probs; needed when β ≠ 0.</param>
    /// <param name="advantages">(B) one advantage per completion.</param>
    /// <param name="mask">(B, T) 1 on completion tokens that take part in the loss, 0 elsewhere.</param>
    /// <param name="gradientAccumulation">Micro-batches in the optimizer step (grpo, bnpo and dr_grpo divide by it).</param>
    /// <param name="batchTokens">Loss tokens in the whole generation batch (DAPO's normaliser).</param>
    public static GrpoLossResult Compute(Tensor logProbs, Tensor? oldLogProbs, Tensor? referenceLogProbs, Tensor advantages, Tensor mask,
        GrpoLossSettings settings, int gradientAccumulation, double batchTokens)
    {
        if (settings.Beta != 0 && referenceLogProbs is null)
            throw new ArgumentException("beta ≠ 0 needs the reference model's log-probs", nameof(referenceLogProbs));
        var old = oldLogProbs ?? logProbs.detach();
        var ratio = (logProbs - old).exp();                                                  // (B, T)
        var clipped = ratio.clamp(1 - settings.Epsilon, 1 + settings.EpsilonUpper);
        var a = advantages.unsqueeze(1);                                                     // (B, 1)
        var perToken = -minimum(ratio * a, clipped * a);
        Tensor? kl = null;
        if (settings.Beta != 0)
        {
            var delta = referenceLogProbs! - logProbs;
            kl = delta.exp() - delta - 1;
            perToken = perToken + settings.Beta * kl;
        }
        var masked = perToken * mask;
        var loss = settings.LossType switch
        {
            GrpoLossType.Grpo => (masked.sum(1) / mask.sum(1).clamp_min(1.0)).mean() / gradientAccumulation,
            GrpoLossType.Bnpo => masked.sum() / mask.sum().clamp_min(1.0) / gradientAccumulation,
            GrpoLossType.DrGrpo => masked.sum() / ((double)perToken.shape[0] * settings.MaxCompletionLength) / gradientAccumulation,
            GrpoLossType.Dapo => masked.sum() / Math.Max(1.0, batchTokens),
            _ => throw new ArgumentOutOfRangeException(nameof(settings)),
        };
        using var noGrad = no_grad();
        var low = ratio.lt(1 - settings.Epsilon).logical_and(a.lt(0)).to(ScalarType.Float32);
        var high = ratio.gt(1 + settings.EpsilonUpper).logical_and(a.gt(0)).to(ScalarType.Float32);
        var region = low.logical_or(high).to(ScalarType.Float32);
        return new GrpoLossResult(loss, kl is null ? zeros(1, device: mask.device).sum() : (kl.detach() * mask).sum(), (low * mask).sum(), (high * mask).sum(),
            (region * mask).sum(), mask.sum());
    }
}
