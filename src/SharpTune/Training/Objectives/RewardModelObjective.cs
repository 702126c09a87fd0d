using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// A reward model over <see cref="RewardPairBatch"/>es, as TRL's RewardTrainer trains one: one forward pass scores the
/// chosen and rejected texts, <see cref="RewardModelLoss"/> (pairwise loss, margins, centring) is summed over the pairs
/// so the trainer's division by the step's pairs makes accumulation exact. Logs what RewardTrainer.compute_loss logs
/// (huggingface/trl@f2cd57710ae345ea6428ae95363267fcf38a3dc8): accuracy (chosen reward strictly above rejected), margin
/// (mean chosen − rejected) and mean_reward (mean over every scored text).
/// </summary>
public sealed class RewardModelObjective(SequenceClassifier classifier, double? centerRewardsCoefficient) : ITrainingObjective
{
    public string AccuracyMetric => "accuracy";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        if (!ReferenceEquals(model, classifier.Model))
            throw new ArgumentException("the reward objective trains its own classifier's decoder", nameof(model));
        var pairs = batch as RewardPairBatch ?? throw new ArgumentException(
            "the reward objective needs reward pair batches (ClassifierCollator.Reward)", nameof(batch));
        var p = pairs.Pairs;
        var rewards = classifier.Logits(pairs.InputIds).squeeze(-1);                           // (2P)
        var chosen = rewards.narrow(0, 0, p);
        var rejected = rewards.narrow(0, p, p);
        var lossSum = RewardModelLoss.Compute(chosen, rejected, pairs.Margins, centerRewardsCoefficient) * p;
        using var noGrad = no_grad();
        var (c, r) = (chosen.detach(), rejected.detach());
        return new ObjectiveOutput(lossSum, c.gt(r).sum(), new Dictionary<string, Tensor>
        {
            ["margin"] = (c - r).sum(),
            ["mean_reward"] = (c + r).sum() / 2,   // per pair, so the mean over pairs is the mean over all 2P rewards
        });
    }
}
