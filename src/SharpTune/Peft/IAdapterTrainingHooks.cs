using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// What an adapter that takes part in every optimizer step gives the trainer (AdaLoRA: a regulariser added to the loss
/// and a rank allocation after each step). The trainer calls <see cref="BeginTraining"/> once, adds
/// <see cref="RegularizationLoss"/>'s gradient to each step's, calls <see cref="AfterOptimizerStep"/> after the optimizer
/// step and before gradients are zeroed, and keeps <see cref="TrainingState"/> in every checkpoint so that a resumed run
/// equals an uninterrupted one. A <see cref="WrappingAdapter{TLayer}"/> that implements it registers on injection, and a
/// trainer whose <c>AdapterHooks</c> is not set runs the hooks of the adapter whose parameters it trains.
/// </summary>
public interface IAdapterTrainingHooks
{
    /// <summary>
    /// Prepares for a run of <paramref name="totalSteps"/> optimizer steps; returns a line for the log when the adapter
    /// took a setting from the run (AdaLoRA's total_step), else null.
    /// </summary>
    string? BeginTraining(int totalSteps);

    /// <summary>
    /// The weighted regularisation term to add to the step's loss (a scalar carrying gradients), or null when there is none.
    /// It must not depend on the batch (only on the parameters): the trainer back-propagates it once per optimizer step,
    /// whatever the micro-batches and gradient accumulation.
    /// </summary>
    Tensor? RegularizationLoss();

    /// <summary>Runs after optimizer step <paramref name="step"/> (0 for the first) while the gradients are still present.</summary>
    void AfterOptimizerStep(int step);

    /// <summary>The tensors the adapter needs to continue exactly from a checkpoint (the live ones: do not dispose them).</summary>
    IReadOnlyDictionary<string, Tensor> TrainingState();

    /// <summary>Restores <see cref="TrainingState"/> from a checkpoint (the values are copied).</summary>
    void LoadTrainingState(IReadOnlyDictionary<string, Tensor> state);
}
