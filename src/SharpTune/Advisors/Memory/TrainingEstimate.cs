namespace SharpTune.Advisors.Memory;

/// <summary>Parameter counts: the whole model and what the method trains.</summary>
public sealed record ParameterCounts(long Total, long Trainable, long MatmulParameters, IReadOnlyList<string> TargetModules);

/// <summary>Memory of one training step by component, in bytes.</summary>
/// <param name="Activations">Everything the forward keeps for the backward, loss included.</param>
/// <param name="Logits">The part of <paramref name="Activations"/> the loss holds (logits and log-softmax).</param>
/// <param name="PeakTraining">The estimated peak: weights and optimizer state plus the larger of (activations + the
/// loss backward's transient) at the start of the backward and (gradients + what the step still holds) at its end.</param>
public sealed record MemoryBreakdown(double Weights, double Gradients, double OptimizerState, double Activations, double Logits,
    double PeakTraining);

/// <summary>Time per epoch (or per step, when the dataset size is unknown) on one device.</summary>
public sealed record DeviceTime(string Device, double PeakTflops, double Utilization, double SecondsPerStep, double? SecondsPerEpoch,
    bool? FitsInMemory, string Source);

/// <summary>
/// The estimator's answer. FLOPs follow PaLM's accounting (Chowdhery et al. 2022, appendix B): full fine-tuning
/// 6·N + 12·L·d_attn·T per token, N the matmul parameters; with a frozen base, 2·N forward + 2·N for the gradients with
/// respect to activations + 6·N_adapter, attention unchanged.
/// </summary>
public sealed record TrainingEstimate(
    string Model,
    EstimateSettings Settings,
    ParameterCounts Parameters,
    MemoryBreakdown Training,
    MemoryBreakdown TrainingWithCheckpointing,
    double InferenceBytes,
    double KvCacheBytes,
    double TrainingFlopsPerToken,
    double? TrainingFlopsPerEpoch,
    IReadOnlyList<DeviceTime> Times,
    IReadOnlyList<string> Notes)
{
    /// <summary>The memory of the settings' own choice: <see cref="TrainingWithCheckpointing"/> when they checkpoint, else <see cref="Training"/>.</summary>
    public MemoryBreakdown ForSettings() => Settings.GradientCheckpointing ? TrainingWithCheckpointing : Training;
}
