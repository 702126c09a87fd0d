using System.Diagnostics;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// QLoRA's training step against the bf16 base's, interleaved step by step in one process so a busy machine slows
/// every variant alike: median seconds per step of LoRA r8 on q/k/v/o over a bf16 base and an NF4 base (quantized from
/// the same random model), with and without gradient checkpointing (of every layer or all but the last one), and each one's tokens/s relative to the bf16 base
/// without checkpointing (the 0.75× target); one variant recomputes every product, as before the recomputation
/// learnt to leave out the frozen down-projection's, and two keep the MLP's gate and up products of half or all layers. Also the time of one dequantization pass over every quantized
/// weight, SIMD against TorchSharp. A relative check: absolute figures and peak memory come from <c>training</c>,
/// run alone.
/// </summary>
internal static class QloraStepBench
{
    public static void Run(string configName, int rounds, int batch, int seq)
    {
        var config = BenchModels.Config(configName);
        manual_seed(0);
        using var bf16 = ModelFactory.Create(config, ScalarType.BFloat16);
        manual_seed(0);
        using var nf4 = ModelFactory.Create(config, ScalarType.BFloat16);
        ModelQuantizer.Quantize(nf4, new QuantizationOptions(QuantizationType.Nf4, ScalarType.BFloat16));
        DequantizationPass(nf4, rounds);

        var layers = config.NumLayers;
        var variants = new (string Name, CausalLanguageModel Model, bool Checkpointing, int? Checkpointed, int Keeping, bool Selective)[]
        {
            ("bf16 base", bf16, false, null, 0, true), ("NF4 base, checkpointing every layer", nf4, true, null, 0, true),
            ("bf16 base, checkpointing", bf16, true, null, 0, true), ("NF4 base", nf4, false, null, 0, true),
            ($"NF4 base, checkpointing {layers - 1} of {layers} layers (the `--quantize` default)", nf4, true,
                ActivationCheckpoint.QuantizedBaseDefault(layers), 0, true),
            ("NF4 base, checkpointing, every product recomputed", nf4, true, null, 0, false),
            ($"NF4 base, checkpointing, {layers / 2} layers keeping MLP products", nf4, true, null, layers / 2, true),
            ($"NF4 base, checkpointing, {layers} layers keeping MLP products", nf4, true, null, layers, true),
        };
        var steps = new Dictionary<CausalLanguageModel, Action<bool, int?, int>>
        {
            [bf16] = StepFor(bf16, config, batch, seq), [nf4] = StepFor(nf4, config, batch, seq),
        };
        var seconds = variants.ToDictionary(v => v.Name, _ => new List<double>());
        for (var round = -1; round < rounds; round++)   // round -1 warms every variant up
        {
            foreach (var (name, model, checkpointing, checkpointed, keeping, selective) in variants)
            {
                FrozenProjection.Enabled = selective;
                var clock = Stopwatch.StartNew();
                steps[model](checkpointing, checkpointed, keeping);
                FrozenProjection.Enabled = true;
                if (round >= 0) seconds[name].Add(clock.Elapsed.TotalSeconds);
            }
        }
        double Median(List<double> xs) => xs.Order().ElementAt(xs.Count / 2);
        var baseline = Median(seconds[variants[0].Name]);
        Console.WriteLine($"| {configName} LoRA r8 q/k/v/o, bf16 compute, {batch}×{seq} | s/step (median of {rounds}, interleaved) | tokens/s | vs bf16 base |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var (name, _, _, _, _, _) in variants)
        {
            var median = Median(seconds[name]);
            Console.WriteLine($"| {name} | {median:F3} | {batch * seq / median:N0} | {baseline / median:F2}× |");
        }
    }

    /// <summary>One optimizer step of a fresh LoRA on <paramref name="model"/>, checkpointing as asked.</summary>
    private static Action<bool, int?, int> StepFor(CausalLanguageModel model, ModelConfig config, int batch, int seq)
    {
        var adapter = new LoraAdapter(new LoraConfig { R = 8, LoraAlpha = 16, TargetModules = TargetModules.Names("q_proj", "k_proj", "v_proj", "o_proj") });
        adapter.Inject(model);
        model.train();
        var optimizer = new AdamW(adapter.TrainableParameters.Select(t => (t.Name, t.Parameter, 0.0)));
        var random = new Random(1);
        return (checkpointing, checkpointed, keeping) =>
        {
            model.GradientCheckpointing = checkpointing;
            model.CheckpointedLayers = checkpointed;
            model.LayersKeepingMlpProducts = keeping;
            var examples = Enumerable.Range(0, batch).Select(_ =>
            {
                var ids = Enumerable.Range(0, seq).Select(_ => random.Next(3, config.VocabSize)).ToArray();
                return new TokenizedExample(ids, ids.Select(_ => true).ToArray());
            }).ToArray();
            using var batchTensor = BatchCollator.Pad(examples, model.Device);
            Trainer.AccumulateGradients(model, (m, b) => CausalLmLoss.Compute(m, b), [batchTensor]);
            optimizer.Step(1e-4);
            optimizer.ZeroGrad();
        };
    }

    private static void DequantizationPass(CausalLanguageModel model, int rounds)
    {
        var weights = ModelQuantizer.QuantizedLayers(model).Select(l => (FourBitWeight)l.Layer.Weight).ToArray();
        double Pass(bool simd)
        {
            var clock = Stopwatch.StartNew();
            foreach (var w in weights)
                using (var d = simd ? FourBitDequantizer.Dequantize(w, ScalarType.BFloat16) : w.DequantizeWithTorch(ScalarType.BFloat16)) { }
            return clock.Elapsed.TotalMilliseconds;
        }
        Pass(true);
        Pass(false);
        var simdMs = new List<double>();
        var torchMs = new List<double>();
        for (var i = 0; i < Math.Max(3, rounds); i++)
        {
            simdMs.Add(Pass(true));
            torchMs.Add(Pass(false));
        }
        var count = weights.Sum(w => w.ElementCount);
        Console.WriteLine($"dequantization of {count / 1e6:F1}M NF4 weights to bf16: SIMD {simdMs.Order().ElementAt(simdMs.Count / 2):F1} ms, " +
                          $"TorchSharp {torchMs.Order().ElementAt(torchMs.Count / 2):F1} ms per pass (median, interleaved)");
    }
}
