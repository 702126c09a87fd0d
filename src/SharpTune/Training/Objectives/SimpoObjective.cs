using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>SimPO's hyper-parameters (TRL's CPOConfig with loss_type simpo: <c>beta</c>, <c>simpo_gamma</c>, <c>cpo_alpha</c>, <c>label_smoothing</c>).</summary>
public sealed record SimpoSettings(double Beta = 0.1, double Gamma = 0.5, double CpoAlpha = 0, double LabelSmoothing = 0);

/// <summary>
/// SimPO over <see cref="PreferenceBatch"/>es (TRL's CPOTrainer, loss_type simpo): no reference model; the loss is
/// <see cref="SimpoLoss"/> on length-averaged answer log-probs plus cpo_alpha × the chosen answers' token-mean NLL.
/// Logs TRL's rewards/*, logps/* and nll_loss.
/// </summary>
public sealed class SimpoObjective(SimpoSettings settings) : ITrainingObjective
{
    public string AccuracyMetric => "rewards/accuracies";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var pairs = batch as PreferenceBatch ?? throw new ArgumentException(
            "the SimPO objective needs preference batches (PreferenceCollator.Collate)", nameof(batch));
        var p = pairs.Pairs;
        var logProbs = TokenLogProbs.Compute(model, pairs.InputIds, pairs.Context, pairs.Targets, out _);   // (2P, T), 0 off the answers
        var average = logProbs.sum(1) / pairs.CompletionLengths;                                            // (2P)
        var result = SimpoLoss.Compute(average.narrow(0, 0, p), average.narrow(0, p, p), settings.Beta, settings.Gamma, settings.LabelSmoothing);
        var nll = -logProbs.narrow(0, 0, p).sum() / pairs.CompletionLengths.narrow(0, 0, p).sum();
        var lossSum = result.Losses.sum();
        if (settings.CpoAlpha != 0) lossSum = lossSum + settings.CpoAlpha * p * nll;
        return PreferenceMetrics.Output(lossSum, result.ChosenRewards, result.RejectedRewards, average, p,
            [new("nll_loss", nll.detach() * p)]);
    }
}
