using System.Runtime.InteropServices;
using SharpTune.Advisors.Memory;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// `estimate` against a real LoRA run on a bf16 or quantized base, measured as the estimator's own test measures it
/// (Advisors/Memory/EstimatorVsMeasuredTests): after a warm-up step, the growth of the resident high-water mark while
/// the base is loaded, LoRA r8 on q/k/v/o injected and two training steps run; the estimate for the same settings
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
        var predicted = checkpointing ? estimate.TrainingWithCheckpointing : estimate.Training;

        // One small step first, so one-off allocations (thread pools, kernels' code and scratch) are not charged to the run.
        var small = config with { NumLayers = 1, VocabSize = 256, Raw = new System.Text.Json.Nodes.JsonObject() };
        using (var warm = ModelFactory.Create(small, ScalarType.BFloat16)) Steps(warm, small, batch, 32, 1);
        var before = ResetPeakAndReadResident();
        using (var model = quantized
                   ? PretrainedModel.Load(checkpoint!, quantization: QuantizationOptions.Parse(quantize, "bf16"))
                   : ModelFactory.Create(config, ScalarType.BFloat16))
        {
            model.GradientCheckpointing = checkpointing;
            model.CheckpointedLayers = recomputed;
            model.LayersKeepingMlpProducts = keeping;
            Steps(model, config, batch, seq, steps);
        }
        var measured = PeakResident() - before;
        var error = (predicted.PeakTraining - measured) / measured;
        Console.WriteLine($"| {configName} LoRA r8 q/k/v/o, bf16, {batch}×{seq}, base {(quantized ? quantize : "bf16")}, checkpointing {checkpointedLayers}" +
                          $"{(keeping > 0 ? $", {keeping} keeping MLP products" : "")}, {steps} steps | estimate {predicted.PeakTraining / 1048576:F0} MiB " +
                          $"(activations {predicted.Activations / 1048576:F0}) | measured growth {measured / 1048576:F0} MiB | {error:+0%;-0%} |");
    }

    private static void Steps(CausalLanguageModel model, ModelConfig config, int batch, int seq, int steps)
    {
        var adapter = new LoraAdapter(new LoraConfig { R = 8, LoraAlpha = 16, TargetModules = TargetModules.Names("q_proj", "k_proj", "v_proj", "o_proj") });
        adapter.Inject(model);
        model.train();
        using var optimizer = new AdamW(adapter.TrainableParameters.Select(t => (t.Name, t.Parameter, 0.0)));
        manual_seed(3);
        for (var step = 0; step < steps; step++)
        {
            using (var scope = NewDisposeScope())
            {
                var ids = randint(3, config.VocabSize, [batch, seq + 1], dtype: ScalarType.Int64);
                var tokens = new TrainingBatch
                {
                    InputIds = ids.narrow(1, 0, seq).contiguous(), Targets = ids.narrow(1, 1, seq).contiguous(),
                    Context = ForwardContext.Causal(batch, seq, CPU), SupervisedTokens = batch * seq, Tokens = batch * seq,
                };
                Trainer.AccumulateGradients(model, (m, b) => CausalLmLoss.Compute(m, b), [tokens]);
                nn.utils.clip_grad_norm_(adapter.TrainableParameters.Select(t => t.Parameter), 1.0);
            }
            optimizer.Step(1e-4);
            optimizer.ZeroGrad();
        }
    }

    // As the estimator's test measures: freed heap returned, VmHWM reset to VmRSS ("5" to clear_refs, Linux ≥ 4.0).
    private static long ResetPeakAndReadResident()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        MallocTrim(0);
        File.WriteAllText("/proc/self/clear_refs", "5");
        return Status("VmRSS");
    }

    private static long PeakResident() => Status("VmHWM");

    private static long Status(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0]) * 1024;
    }

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);
}
