using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// What an objective computes for one micro-batch. <see cref="LossSum"/> and <see cref="Correct"/> are sums over the
/// batch's <see cref="TrainingBatch.LossUnits"/> (supervised tokens for causal LM, pairs for DPO); the trainer divides
/// them by the step's total units. <see cref="MetricSums"/> are further per-unit sums to log (e.g. DPO's rewards), also
/// divided by the units.
/// </summary>
public sealed record ObjectiveOutput(Tensor LossSum, Tensor Correct, IReadOnlyDictionary<string, Tensor>? MetricSums = null)
{
    /// <summary>
    /// What some <see cref="MetricSums"/> are divided by instead of the loss units (KTO's rewards/chosen is a mean over
    /// the desirable examples only); summed over micro-batches like the sums. A metric whose count is 0 is not logged.
    /// </summary>
    public IReadOnlyDictionary<string, Tensor>? MetricCounts { get; init; }
}

/// <summary>A training objective: how a micro-batch becomes a summed loss, and what its accuracy counts.</summary>
public interface ITrainingObjective
{
    /// <summary>The metrics name of <see cref="ObjectiveOutput.Correct"/> / units ("token_accuracy", "rewards/accuracies").</summary>
    string AccuracyMetric { get; }

    /// <summary>Forward pass and loss for one micro-batch (gradients flow through <see cref="ObjectiveOutput.LossSum"/>).</summary>
    ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch);

    /// <summary>Adds metrics derived from the averaged ones (e.g. KTO's rewards/margins) to a step's or evaluation's record.</summary>
    void CompleteMetrics(IDictionary<string, double> metrics)
    {
    }
}

/// <summary>Wraps a plain <see cref="TrainingObjective"/> delegate (next-token cross-entropy and its variants).</summary>
public sealed class TokenObjective(TrainingObjective objective) : ITrainingObjective
{
    /// <summary>Next-token cross-entropy over the supervised tokens.</summary>
    public static TokenObjective CausalLm { get; } = new((m, b) => CausalLmLoss.Compute(m, b));

    public string AccuracyMetric => "token_accuracy";

    /// <summary>The metric the load-balancing loss of a mixture-of-experts model is logged under (transformers' aux_loss).</summary>
    public const string AuxLossMetric = "aux_loss";

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        if (model.Config.Experts is not { OutputRouterLogits: true } experts || model.RouterLogits is not { } router)
        {
            var (loss, correct) = objective(model, batch);
            return new ObjectiveOutput(loss, correct);
        }
        // transformers' *MoeForCausalLM adds router_aux_loss_coef · aux_loss to the mean token loss when output_router_logits
        // is set. Here losses are sums divided by the step's units, so the batch's term is weighted by its units: one
        // micro-batch gives exactly mean CE + coef · aux, and accumulated micro-batches a unit-weighted mean of their aux.
        if (model.GradientCheckpointing && model.training && is_grad_enabled())
            throw new NotSupportedException(
                $"{model.Config.Architecture}: output_router_logits = true (the load-balancing loss) cannot be combined with gradient " +
                "checkpointing here: a recomputed layer's router logits would carry no gradient; turn one of them off");
        using var recording = router.Start();
        var (tokenLoss, hits) = objective(model, batch);
        var aux = LoadBalancingLoss.Compute(recording.Logits, experts.ExpertCount, experts.ExpertsPerToken, batch.TokenMask);
        var units = batch.LossUnits;
        return new ObjectiveOutput(tokenLoss + aux * (experts.RouterAuxLossCoefficient * units), hits,
            new Dictionary<string, Tensor> { [AuxLossMetric] = aux.detach() * units });
    }
}
