using SharpTune.Models;
using SharpTune.Peft.Lora;
using SharpTune.Runtime;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Advisors.Memory;

/// <summary>What a real run of an estimate's settings took: the growth of the resident high-water mark over its steps.</summary>
/// <param name="PeakTrainingBytes">VmHWM at the end minus VmRSS before the model was built or loaded.</param>
/// <param name="Steps">Optimizer steps run (0: the load and the adapter alone).</param>
/// <param name="Allocator">The C allocator that served the run (jemalloc, glibc or system): it decides how far the
/// resident peak rises above the tensors (<see cref="Runtime.NativeAllocator"/>).</param>
public sealed record MeasuredTrainingMemory(double PeakTrainingBytes, int Steps, string Allocator);

/// <summary>
/// Runs an estimate's settings for real on this machine, so the estimate can be checked where it will be used
/// (<c>sharptune estimate --measure</c>): the model is built (from a config, random weights) or loaded (from a model
/// folder, quantized as training loads it), the adapter injected, and a few AdamW steps with the trainer's own gradient
/// accumulation and clipping run on random tokens. Meant for a fresh process: memory a process freed earlier and
/// kept (allocators rarely give back every page) would be reused and hide part of the peak.
/// </summary>
public static class TrainingMemoryProbe
{
    public static bool IsSupported => ResidentMemory.IsSupported;

    /// <param name="modelDir">A model folder with safetensors weights to load, or null to build <paramref name="config"/> with random weights.</param>
    public static MeasuredTrainingMemory Measure(ModelConfig config, EstimateSettings settings, string? modelDir, int steps = 2)
    {
        settings.Validate();
        if (!IsSupported)
            throw new PlatformNotSupportedException("measuring peak memory needs Linux's /proc/self/status and /proc/self/clear_refs");
        if (steps < 0) throw new ArgumentException($"measured steps must not be negative, found {steps}");
        var hasWeights = modelDir is not null && Directory.Exists(modelDir) && Directory.EnumerateFiles(modelDir, "*.safetensors").Any();
        if (settings.Quantize is not null && !hasWeights)
            throw new ArgumentException($"measuring a {settings.Quantize} base loads it as training does, layer by layer from safetensors weights; " +
                                        $"{(modelDir is null ? "give a model folder (--model DIR)" : $"found none in {modelDir}")}");
        TorchRuntime.EnsureInitialised();
        var dtype = settings.ComputeBytes == 4 ? ScalarType.Float32 : ScalarType.BFloat16;
        WarmUp(config);

        var before = ResidentMemory.ResetPeakAndReadResident();
        using (var model = hasWeights
                   ? PretrainedModel.Load(modelDir!, settings.Quantize is null ? dtype : null, quantization: settings.QuantizationSettings())
                   : ModelFactory.Create(config, dtype))
        {
            model.GradientCheckpointing = settings.GradientCheckpointing;
            model.CheckpointedLayers = settings.CheckpointedLayers;
            model.LayersKeepingMlpProducts = settings.LayersKeepingMlpProducts;
            RunSteps(model, settings, steps);
        }
        return new MeasuredTrainingMemory(ResidentMemory.PeakResident() - before, steps, NativeAllocator.Current);
    }

    /// <summary>A one-layer step in each dtype first, so one-off allocations (thread pools, kernels' code and scratch) are not charged to the run.</summary>
    private static void WarmUp(ModelConfig config)
    {
        var small = config with { NumLayers = 1, VocabSize = 256, Raw = new System.Text.Json.Nodes.JsonObject() };
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            using var model = ModelFactory.Create(small, dtype);
            RunSteps(model, new EstimateSettings { Method = "full", SequenceLength = 32, MicroBatchSize = 2 }, 1);
        }
    }

    private static void RunSteps(CausalLanguageModel model, EstimateSettings settings, int steps)
    {
        manual_seed(3);
        LoraAdapter? adapter = null;
        if (!settings.IsFull)
        {
            adapter = new LoraAdapter(new LoraConfig
            {
                R = settings.LoraR, LoraAlpha = 2 * settings.LoraR, LoraDropout = settings.LoraDropout, UseDora = settings.IsDora,
                TargetModules = FineTuningMethods.ParseTargets(settings.TargetModules),
            });
            adapter.Inject(model);
        }
        var trainable = adapter?.TrainableParameters ?? model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        model.train();
        using var optimizer = AdamWOptimizer.Create(settings.Optim, trainable.Select(t => (t.Name, t.Parameter, 0.0, 1.0)));
        int batch = settings.MicroBatchSize, seq = settings.SequenceLength;
        for (var step = 0; step < steps; step++)
        {
            using (NewDisposeScope())
            {
                var ids = randint(0, model.Config.VocabSize, [batch, seq + 1], dtype: ScalarType.Int64);
                var tokens = new TrainingBatch
                {
                    InputIds = ids.narrow(1, 0, seq).contiguous(), Targets = ids.narrow(1, 1, seq).contiguous(),
                    Context = ForwardContext.Causal(batch, seq, CPU), SupervisedTokens = batch * seq, Tokens = batch * seq,
                };
                Trainer.AccumulateGradients(model, (m, b) => CausalLmLoss.Compute(m, b), [tokens]);
                nn.utils.clip_grad_norm_(trainable.Select(t => t.Parameter), 1.0);
            }
            optimizer.Step(1e-4);
            optimizer.ZeroGrad();
        }
    }
}
