using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// One micro-batch's RLOO loss (already divided by the step's micro-batch count, as the Hugging Face Trainer divides
/// RLOO's unscaled loss) and its per-sequence clip indicators reduced to the scalars its metrics are made of (on the
/// loss's device; read them with <c>item</c>).
/// </summary>
/// <param name="LowClippedSum">Sequences whose ratio fell below 1 − ε with a negative advantage.</param>
/// <param name="HighClippedSum">Sequences whose ratio rose above 1 + ε_high with a positive advantage.</param>
/// <param name="RegionClippedSum">Sequences clipped either way.</param>
/// <param name="LowClippedMin">The low indicator's minimum over the sequences (1 only when all were low-clipped).</param>
/// <param name="HighClippedMax">The high indicator's maximum over the sequences (1 when any was high-clipped).</param>
public sealed record RlooLossResult(Tensor Loss, Tensor LowClippedSum, Tensor HighClippedSum, Tensor RegionClippedSum, Tensor LowClippedMin,
    Tensor HighClippedMax);

/// <summary>
/// TRL's RLOO objective (huggingface/trl@f2cd577, <c>RLOOTrainer._compute_loss</c>): PPO's clipped surrogate on the
/// sequence-level ratio, not per token. With log π(o) = Σ_t log π(o_t | prefix) over the completion's loss tokens and r =
/// exp(log π(o) − log π_old(o)): −min(r·A, clip(r, 1−ε, 1+ε_high)·A), averaged over the micro-batch's sequences. The KL
/// penalty is already in the advantage (<see cref="RlooAdvantages"/>), so there is no KL term here.
/// </summary>
public static class RlooLoss
{
    /// <param name="logProbs">(B, T) policy log-probs of each completion token (gradient flows here).</param>
    /// <param name="oldLogProbs">(B, T) log-probs when the completions were sampled, or null when they were not kept (μ = 1,
    /// β = 0: the ratio is then exactly 1, its value at the sampling policy).</param>
    /// <param name="advantages">(B) one advantage per completion.</param>
    /// <param name="mask">(B, T) 1 on completion tokens that take part in the loss (none of a masked truncated completion).</param>
    /// <param name="epsilon">The lower clip ε.</param>
    /// <param name="epsilonHigh">The upper clip ε_high.</param>
    /// <param name="gradientAccumulation">Micro-batches in the optimizer step.</param>
    public static RlooLossResult Compute(Tensor logProbs, Tensor? oldLogProbs, Tensor advantages, Tensor mask, double epsilon, double epsilonHigh,
        int gradientAccumulation)
    {
        var logps = (logProbs * mask).sum(1);                                               // (B)
        var old = oldLogProbs is null ? logps.detach() : (oldLogProbs * mask).sum(1);
        var ratio = (logps - old).exp();                                                    // coef_1
        var clipped = ratio.clamp(1 - epsilon, 1 + epsilonHigh);                            // coef_2
        var perSequence = -minimum(ratio * advantages, clipped * advantages);
        var loss = perSequence.mean() / gradientAccumulation;
        using var noGrad = no_grad();
        var lowMask = ratio.lt(1 - epsilon).logical_and(advantages.lt(0));
        var highMask = ratio.gt(1 + epsilonHigh).logical_and(advantages.gt(0));
        var low = lowMask.to(ScalarType.Float32).detach();
        var high = highMask.to(ScalarType.Float32).detach();
        var region = lowMask.logical_or(highMask).to(ScalarType.Float32).detach();
        return new RlooLossResult(loss, low.sum(), high.sum(), region.sum(), low.min(), high.max());
    }
}
