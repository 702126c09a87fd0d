using SharpTune.Models;

namespace SharpTune.Training.Objectives;

/// <summary>
/// An objective that runs its own backward pass for a training micro-batch instead of handing the trainer a loss to
/// differentiate: gradient caching (<see cref="CachedEmbeddingObjective"/>) back-propagates piece by piece so that only a
/// piece's activations live at once. <see cref="ITrainingObjective.Compute"/> still serves evaluation, without gradients.
/// </summary>
internal interface IBackwardObjective : ITrainingObjective
{
    /// <summary>
    /// Computes the micro-batch's output and adds to the trainable parameters' gradients the gradient of
    /// <see cref="ObjectiveOutput.LossSum"/> × <paramref name="lossScale"/> (the trainer's 1 / step units), as
    /// <c>backward()</c> of that product would; the returned loss carries no graph.
    /// </summary>
    ObjectiveOutput ComputeWithBackward(CausalLanguageModel model, TrainingBatch batch, double lossScale);
}
