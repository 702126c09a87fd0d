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

    public ObjectiveOutput Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        var (loss, correct) = objective(model, batch);
        return new ObjectiveOutput(loss, correct);
    }
}
