using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>KTO's hyper-parameters (TRL's KTOConfig: <c>beta</c>, <c>desirable_weight</c>, <c>undesirable_weight</c>, <c>loss_type</c>).</summary>
public sealed record KtoSettings(double Beta = 0.1, double DesirableWeight = 1.0, double UndesirableWeight = 1.0, KtoLossType LossType = KtoLossType.Kto);

/// <summary>
/// KTO over <see cref="KtoBatch"/>es (TRL's KTOTrainer): summed completion log-probs under the policy and the reference
/// (<see cref="DpoReference"/>: adapter disabled or a frozen copy), the KL reference point from the batch's mismatched
/// rows, and <see cref="KtoLoss"/>. Logs kl, rewards/chosen, rewards/rejected, rewards/margins, logps/chosen and
/// logps/rejected as TRL does (each reward a mean over its own examples). Its accuracy counts examples whose implicit
/// reward has the sign of their label.
/// </summary>
public sealed class KtoObjective(KtoSettings settings, DpoReference reference) : ITrainingObjective
{
    public string AccuracyMetric => "rewards/sign_agreement";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var kto = batch as KtoBatch ?? throw new ArgumentException("the KTO objective needs KtoBatch.Collate batches", nameof(batch));
        var b = kto.Examples;
        var device = kto.InputIds.device;
        var chosenIndex = tensor(Enumerable.Range(0, b).Where(i => kto.Desirable[i]).Select(i => (long)i).ToArray(), device: device);
        var rejectedIndex = tensor(Enumerable.Range(0, b).Where(i => !kto.Desirable[i]).Select(i => (long)i).ToArray(), device: device);
        Tensor policy, referenceRows;
        Tensor? policyKl = null, referenceKl = null;
        if (kto.HasKlRows)
        {
            // TRL's KTOTrainer scores the KL rows in forwards of their own (_compute_kl_logps, the policy's under
            // torch.no_grad in the model's current mode: train, dropout on, no eval() switch; the reference's in its
            // no-grad pass), trl/trainer/kto_trainer.py @ f2cd577. No KL row's activations are then held for the backward,
            // and no no-grad pass spans twice the examples' rows.
            using var exampleRows = kto.Rows(0, b);
            using var klRows = kto.Rows(b, b);
            referenceRows = reference.Score(model, m => SequenceLogProbs.Compute(m, exampleRows));
            referenceKl = reference.Score(model, m => SequenceLogProbs.Compute(m, klRows));
            using (no_grad())
                policyKl = SequenceLogProbs.Compute(model, klRows);
            policy = SequenceLogProbs.Compute(model, exampleRows);
        }
        else
        {
            referenceRows = reference.Score(model, m => SequenceLogProbs.Compute(m, kto));
            policy = SequenceLogProbs.Compute(model, kto);
        }
        var result = KtoLoss.Compute(policy.index_select(0, chosenIndex), policy.index_select(0, rejectedIndex), policyKl,
            referenceRows.index_select(0, chosenIndex), referenceRows.index_select(0, rejectedIndex), referenceKl,
            settings.Beta, settings.DesirableWeight, settings.UndesirableWeight, settings.LossType);
        var lossSum = result.Losses.sum();
        using var noGrad = no_grad();
        var detached = policy.detach();
        var chosenCount = tensor((double)chosenIndex.shape[0]);
        var rejectedCount = tensor((double)rejectedIndex.shape[0]);
        var metrics = new Dictionary<string, Tensor>
        {
            ["kl"] = result.Kl * b,
            ["rewards/chosen"] = result.ChosenRewards.sum(),
            ["logps/chosen"] = detached.index_select(0, chosenIndex).sum(),
            ["rewards/rejected"] = result.RejectedRewards.sum(),
            ["logps/rejected"] = detached.index_select(0, rejectedIndex).sum(),
        };
        var counts = new Dictionary<string, Tensor>
        {
            ["rewards/chosen"] = chosenCount, ["logps/chosen"] = chosenCount,
            ["rewards/rejected"] = rejectedCount, ["logps/rejected"] = rejectedCount,
        };
        var agree = result.ChosenRewards.gt(0).sum() + result.RejectedRewards.lt(0).sum();
        return new ObjectiveOutput(lossSum, agree, metrics) { MetricCounts = counts };
    }

    public void CompleteMetrics(IDictionary<string, double> metrics)
    {
        foreach (var prefix in new[] { "", "val_" })
            if (metrics.TryGetValue(prefix + "rewards/chosen", out var chosen) && metrics.TryGetValue(prefix + "rewards/rejected", out var rejected))
                metrics[prefix + "rewards/margins"] = chosen - rejected;
    }
}
