using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// ORPO over <see cref="PreferenceBatch"/>es (TRL's ORPOTrainer): no reference model; one forward pass gives the chosen
/// answers' NLL — over the whole chosen sequence, prompt included, as TRL computes it — and the length-averaged answer
/// log-probs the odds ratio compares. The micro-batch loss is NLL − mean(β·log σ(log-odds)), weighted by its pairs so
/// that a step averages over pairs. Logs TRL's rewards/*, logps/*, nll_loss, log_odds_ratio and log_odds_chosen.
/// </summary>
public sealed class OrpoObjective(double beta) : ITrainingObjective
{
    public string AccuracyMetric => "rewards/accuracies";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var pairs = batch as PreferenceBatch ?? throw new ArgumentException(
            "the ORPO objective needs preference batches (PreferenceCollator.Collate)", nameof(batch));
        var p = pairs.Pairs;
        var fullTargets = TokenLogProbs.FullSequenceTargets(pairs.InputIds, pairs.Targets);
        var logProbs = TokenLogProbs.Compute(model, pairs.InputIds, pairs.Context, fullTargets, out _);   // (2P, T)
        var answerMask = pairs.Targets.ne(BatchCollator.IgnoreIndex).to(ScalarType.Float32);
        var average = (logProbs * answerMask).sum(1) / pairs.CompletionLengths;                         // (2P)
        var chosenTokens = fullTargets.narrow(0, 0, p).ne(BatchCollator.IgnoreIndex).to(ScalarType.Float32);
        var nll = -(logProbs.narrow(0, 0, p) * chosenTokens).sum() / chosenTokens.sum().clamp_min(1);
        var result = OrpoLoss.Compute(average.narrow(0, 0, p), average.narrow(0, p, p), beta);
        var lossSum = p * nll - result.Losses.sum();
        using var noGrad = no_grad();
        return PreferenceMetrics.Output(lossSum, result.ChosenRewards, result.RejectedRewards, average, p, new Dictionary<string, Tensor>
        {
            ["nll_loss"] = nll.detach() * p,
            ["log_odds_ratio"] = result.Ratio.sum(),
            ["log_odds_chosen"] = result.LogOdds.sum(),
        });
    }
}
