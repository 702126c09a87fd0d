using SharpTune.Advisors.Memory;

namespace SharpTune.Bench;

/// <summary>
/// `estimate` against a real LoRA run on a bf16 or quantized base, measured by <see cref="TrainingMemoryProbe"/> as
/// `sharptune estimate --measure` and the estimator's own test measure it: the growth of the resident high-water mark
/// while the base is loaded, LoRA r8 on q/k/v/o injected and the training steps run; the estimate for the same settings
/// beside it. For models too large for the unit suite (M).
/// </summary>
internal static class EstimateCheckBench
{
    /// <param name="quantize">nf4|fp4|int8, or "none" for a bf16 base.</param>
    /// <param name="checkpointedLayers">"none" (no checkpointing), "all", or how many layers are recomputed.</param>
    /// <param name="steps">Training steps (0: the load and the adapter alone).</param>
    public static void Run(string configName, string quantize, string checkpointedLayers, int keeping, int batch, int seq, int steps = 2)
    {
        var config = BenchModels.Config(configName);
        var quantized = quantize != "none";
        var checkpoint = quantized ? BenchModels.Checkpoint(configName) : null;
        var checkpointing = checkpointedLayers != "none";
        int? recomputed = checkpointedLayers is "none" or "all" ? null : int.Parse(checkpointedLayers);
        var settings = new EstimateSettings
        {
            Method = "lora", Dtype = "bf16", SequenceLength = seq, MicroBatchSize = batch, LoraR = 8,
            TargetModules = "q_proj,k_proj,v_proj,o_proj", Quantize = quantized ? quantize : null,
            GradientCheckpointing = checkpointing, CheckpointedLayers = recomputed, LayersKeepingMlpProducts = keeping,
        };
        var estimate = TrainingEstimator.Estimate(config, settings, configName);
        var predicted = estimate.ForSettings();
        var measured = TrainingMemoryProbe.Measure(config, settings, checkpoint, steps).PeakTrainingBytes;
        var error = (predicted.PeakTraining - measured) / measured;
        Console.WriteLine($"| {configName} LoRA r8 q/k/v/o, bf16, {batch}×{seq}, base {(quantized ? quantize : "bf16")}, checkpointing {checkpointedLayers}" +
                          $"{(keeping > 0 ? $", {keeping} keeping MLP products" : "")}, {steps} steps | estimate {predicted.PeakTraining / 1048576:F0} MiB " +
                          $"(activations {predicted.Activations / 1048576:F0}) | measured growth {measured / 1048576:F0} MiB | {error:+0%;-0%} |");
    }
}
