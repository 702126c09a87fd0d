using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>DPO's hyperparameters (TRL's <c>beta</c>, <c>label_smoothing</c>, <c>loss_type</c>).</summary>
public sealed record DpoSettings(double Beta = 0.1, double LabelSmoothing = 0, DpoLossType LossType = DpoLossType.Sigmoid)
{
    public static DpoSettings From(TrainingOptions options) =>
        new(options.Beta ?? 0.1, options.LabelSmoothing, DpoLoss.ParseType(options.LossType ?? "sigmoid"));
}

/// <summary>
/// Direct Preference Optimization over <see cref="PreferenceBatch"/>es: one forward pass scores chosen and rejected
/// completions under the policy, <paramref name="reference"/> gives the frozen model's scores, and the loss is summed
/// per pair. Logs TRL's rewards/chosen, rewards/rejected, rewards/margins and rewards/accuracies, and the policy's
/// logps/chosen and logps/rejected.
/// </summary>
public sealed class DpoObjective(DpoSettings settings, DpoReference reference) : ITrainingObjective
{
    public DpoSettings Settings => settings;

    public string AccuracyMetric => "rewards/accuracies";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var pairs = batch as PreferenceBatch ?? throw new ArgumentException(
            "the DPO objective needs preference batches (PreferenceCollator.Collate), not plain sequences", nameof(batch));
        var p = pairs.Pairs;
        var referenceLogProbs = reference.LogProbs(model, pairs);          // (2P), no gradient
        var policyLogProbs = SequenceLogProbs.Compute(model, pairs);       // (2P)
        if (settings.LossType == DpoLossType.Ipo)
        {
            // IPO compares length-averaged log-probs (as TRL does), so long answers do not dominate the margin.
            policyLogProbs = policyLogProbs / pairs.CompletionLengths;
            referenceLogProbs = referenceLogProbs / pairs.CompletionLengths;
        }
        var result = DpoLoss.Compute(policyLogProbs.narrow(0, 0, p), policyLogProbs.narrow(0, p, p),
            referenceLogProbs.narrow(0, 0, p), referenceLogProbs.narrow(0, p, p), settings.Beta, settings.LabelSmoothing, settings.LossType);
        var lossSum = result.Losses.sum();   // before no_grad: the gradient flows through this one
        return PreferenceMetrics.Output(lossSum, result.ChosenRewards, result.RejectedRewards, policyLogProbs, p);
    }
}
