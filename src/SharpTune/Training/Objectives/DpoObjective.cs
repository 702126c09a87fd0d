using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>DPO's hyperparameters (TRL's <c>beta</c>, <c>label_smoothing</c>, <c>loss_type</c>).</summary>
public sealed record DpoSettings(double Beta = 0.1, double LabelSmoothing = 0, DpoLossType LossType = DpoLossType.Sigmoid)
{
    public static DpoSettings From(TrainingOptions options)
    {
        var type = DpoLoss.ParseType(options.LossType ?? "sigmoid");
        DpoLoss.ValidateLabelSmoothing(options.LabelSmoothing, type);
        return new(options.Beta ?? 0.1, options.LabelSmoothing, type);
    }
}

/// <summary>
/// Direct Preference Optimization over <see cref="PreferenceBatch"/>es: one forward pass scores chosen and rejected
/// completions under the policy, <paramref name="reference"/> gives the frozen model's scores, and the loss is summed
/// per pair. Logs TRL's rewards/chosen, rewards/rejected, rewards/margins and rewards/accuracies, and the policy's
/// logps/chosen and logps/rejected, all from summed log-probs, also for IPO, whose loss alone compares length-averaged
/// ones (as TRL since huggingface/trl#3906).
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
        // IPO compares length-averaged log-probs (as TRL does), so long answers do not dominate the margin.
        var scale = settings.LossType == DpoLossType.Ipo ? pairs.CompletionLengths : null;
        var policyScored = scale is null ? policyLogProbs : policyLogProbs / scale;
        var referenceScored = scale is null ? referenceLogProbs : referenceLogProbs / scale;
        var result = DpoLoss.Compute(policyScored.narrow(0, 0, p), policyScored.narrow(0, p, p),
            referenceScored.narrow(0, 0, p), referenceScored.narrow(0, p, p), settings.Beta, settings.LabelSmoothing, settings.LossType);
        var lossSum = result.Losses.sum();   // before no_grad: the gradient flows through this one
        using var noGrad = no_grad();
        // TRL logs the implicit rewards from the summed log-ratios whatever the loss compares.
        var rewards = settings.Beta * (policyLogProbs.detach() - referenceLogProbs);
        return PreferenceMetrics.Output(lossSum, rewards.narrow(0, 0, p), rewards.narrow(0, p, p), policyLogProbs, p);
    }
}
