using System.Diagnostics;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// Training throughput on random tokens (as the PyTorch peer): tokens/s, model-FLOP utilisation against the measured
/// peak, peak RSS. FLOPs: full = 6·N per token; LoRA = 2·N forward + 2·N backward through activations (no weight
/// gradients for frozen matrices) + 6·N_adapter, with N the matmul parameters.
/// </summary>
internal static class TrainingBench
{
    /// <param name="quantize">nf4|fp4|int8: the base is loaded quantized from a checkpoint of the same random model
    /// (written by a child process, so its full-precision copy never counts in this process's peak RSS); null = none.</param>
    public static void Run(string configName, string method, string dtypeName, int steps, int batch, int seq, string? quantize = null)
    {
        var config = BenchModels.Config(configName);
        var dtype = ModelFactory.ParseDtype(dtypeName);
        if (quantize is not null) BenchModels.Checkpoint(configName);   // written by a child process before the baseline
        manual_seed(0);
        // The runtime's own memory: the peak minus this is what `estimate` predicts (docs/advisors.md).
        using (zeros(1)) Console.Error.WriteLine($"  RSS before the model: {MemoryProbe.RssGiB():F3} GiB");
        using var model = quantize is null
            ? ModelFactory.Create(config, dtype)
            : PretrainedModel.Load(BenchModels.Checkpoint(configName), quantization: SharpTune.Quantization.QuantizationOptions.Parse(quantize, dtypeName));
        IReadOnlyList<(string, TorchSharp.Modules.Parameter)> trainable;
        long adapterParams = 0;
        if (method == "full")
        {
            trainable = model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
        }
        else
        {
            // LoRA as the peer measured it (r 8 on q, k, v, o); every other method with its defaults.
            var adapter = method == "lora"
                ? new LoraAdapter(new LoraConfig { R = 8, LoraAlpha = 16, TargetModules = TargetModules.Names("q_proj", "k_proj", "v_proj", "o_proj") })
                : FineTuningMethods.CreateAdapter(new TrainingOptions { Method = method, NumVirtualTokens = 20 })!;
            adapter.Inject(model);
            trainable = adapter.TrainableParameters;
            adapterParams = trainable.Sum(t => t.Item2.numel());
        }
        model.train();
        model.GradientCheckpointing = Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_CHECKPOINTING") == "1";
        // With checkpointing: how many of the first layers are recomputed (unset: as `train` does, every layer but the
        // last on a quantized base, else all; "all" for every layer).
        var checkpointedSetting = Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_CHECKPOINTED_LAYERS");
        if (int.TryParse(checkpointedSetting, out var checkpointedLayers)) model.CheckpointedLayers = checkpointedLayers;
        else if (checkpointedSetting != "all" && quantize is not null) model.CheckpointedLayers = ActivationCheckpoint.QuantizedBaseDefault(config.NumLayers);
        // With checkpointing: how many of the recomputed layers keep their frozen MLP products (unset: none).
        if (int.TryParse(Environment.GetEnvironmentVariable("SHARPTUNE_BENCH_KEEPING_LAYERS"), out var keepingLayers))
            model.LayersKeepingMlpProducts = keepingLayers;
        var optimizer = new AdamW(trainable.Select(t => (t.Item1, t.Item2, 0.0)));
        var n = BenchModels.MatmulParameters(config);
        // Frozen-base methods: forward 2N + backward through activations 2N (no weight gradients) + 6 per adapter weight.
        var flopsPerToken = method == "full" ? 6.0 * n : 4.0 * n + 6.0 * adapterParams;
        Console.Error.WriteLine($"  peak RSS after loading: {MemoryProbe.PeakRssGiB():F3} GiB; now {MemoryProbe.RssSplit()}");
        var measuredPeak = PeakProbe.Measure(dtype);
        // Training itself runs no probe: its products' freed pages are handed back, or they would stay resident all run
        // (under jemalloc with purging off, in its arena for blocks of 8 MiB and more, which a LoRA step may never reuse).
        SharpTune.Runtime.AllocatorTuning.ReleaseFreeMemory();
        Console.Error.WriteLine($"  peak RSS after the matmul probe: {MemoryProbe.PeakRssGiB():F2} GiB (checkpointing {(model.GradientCheckpointing ? $"on, {model.CheckpointedLayers?.ToString() ?? "all"} layers, {model.LayersKeepingMlpProducts} keeping MLP products" : "off")})");
        var random = new Random(1);
        TrainingObjective objective = (m, b) => CausalLmLoss.Compute(m, b);
        double total = 0;
        var measured = 0;
        for (var step = 0; step < steps; step++)
        {
            var examples = Enumerable.Range(0, batch).Select(_ =>
            {
                var ids = Enumerable.Range(0, seq).Select(_ => random.Next(3, config.VocabSize)).ToArray();
                return new TokenizedExample(ids, ids.Select(_ => true).ToArray());
            }).ToArray();
            var clock = Stopwatch.StartNew();
            var batchTensor = BatchCollator.Pad(examples, model.Device);
            Trainer.AccumulateGradients(model, objective, [batchTensor]);
            using (var scope = NewDisposeScope()) nn.utils.clip_grad_norm_(trainable.Select(t => t.Item2), 1.0);
            optimizer.Step(1e-4);
            optimizer.ZeroGrad();
            var seconds = clock.Elapsed.TotalSeconds;
            if (step >= 2) { total += seconds; measured++; }   // the first steps warm up allocators and kernels
            Console.Error.WriteLine($"  step {step}: {seconds:F3} s, peak RSS {MemoryProbe.PeakRssGiB():F3} GiB; now {MemoryProbe.RssSplit()}");
        }
        var tokensPerSecond = measured * batch * seq / total;
        var achieved = tokensPerSecond * flopsPerToken;
        Console.WriteLine($"| {configName} | {method}{(quantize is null ? "" : $" on {quantize}")} | {dtypeName} | {batch}×{seq} | {tokensPerSecond:N0} | {achieved / 1e9:F0} | " +
                          $"{achieved / measuredPeak:P0} of {measuredPeak / 1e9:F0} | {achieved / PeakProbe.Design(dtype):P0} | {MemoryProbe.PeakRssGiB():F2} |");
    }
}
