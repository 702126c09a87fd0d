using System.Diagnostics;
using SharpTune.Distributed;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// Data-parallel training throughput: the same global batch per optimizer step on one process or split across MPI ranks
/// (run under mpirun; see bench/distributed.sh). Each step: this rank's share forward and backward, gradients summed
/// across ranks in buckets, clip, AdamW. Rank 0 prints global tokens/s and the all-reduce's share of the step time.
/// </summary>
internal static class DataParallelBench
{
    public static void Run(string configName, string method, string dtypeName, int steps, int globalBatch, int seq)
    {
        var group = ProcessGroups.InitializeFromEnvironment();
        try
        {
            if (globalBatch % group.Size != 0) throw new ArgumentException($"global batch {globalBatch} does not split over {group.Size} ranks");
            var config = BenchModels.Config(configName);
            manual_seed(0);   // the same model on every rank
            using var model = ModelFactory.Create(config, ModelFactory.ParseDtype(dtypeName));
            IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable;
            if (method == "full") trainable = model.named_parameters().Select(p => (p.name, p.parameter)).ToArray();
            else
            {
                var adapter = new LoraAdapter(new LoraConfig { R = 8, LoraAlpha = 16, TargetModules = TargetModules.Names("q_proj", "k_proj", "v_proj", "o_proj") });
                adapter.Inject(model);
                trainable = adapter.TrainableParameters;
            }
            model.train();
            using var optimizer = new AdamW(trainable.Select(t => (t.Name, t.Parameter, 0.0)));
            var random = new Random(1);   // the same global batches on every rank
            var share = globalBatch / group.Size;
            double total = 0, reduce = 0;
            for (var step = 0; step < steps; step++)
            {
                var examples = Enumerable.Range(0, globalBatch).Select(_ =>
                {
                    var ids = Enumerable.Range(0, seq).Select(_ => random.Next(3, config.VocabSize)).ToArray();
                    return new TokenizedExample(ids, ids.Select(_ => true).ToArray());
                }).Skip(group.Rank * share).Take(share).ToArray();
                var clock = Stopwatch.StartNew();
                var batch = BatchCollator.Pad(examples, model.Device);
                var units = DataParallel.Agree(batch.LossUnits, false, group).Units;
                Trainer.AccumulateGradients(model, TokenObjective.CausalLm, [batch], units);
                var reduceClock = Stopwatch.StartNew();
                GradientAllReduce.Sum(trainable, group);
                var reduceSeconds = reduceClock.Elapsed.TotalSeconds;
                using (var scope = NewDisposeScope()) nn.utils.clip_grad_norm_(trainable.Select(t => t.Parameter), 1.0);
                optimizer.Step(1e-4);
                optimizer.ZeroGrad();
                if (step == 0) continue;   // warm-up
                total += clock.Elapsed.TotalSeconds;
                reduce += reduceSeconds;
            }
            if (group.Rank == 0)
            {
                var measured = Math.Max(1, steps - 1);
                var bytes = trainable.Sum(t => t.Parameter.numel()) * 4;
                Console.WriteLine($"| {configName} | {method} | {dtypeName} | {group.Size} × {Environment.GetEnvironmentVariable("SHARPTUNE_THREADS") ?? "all"} threads | " +
                                  $"{globalBatch}×{seq} | {globalBatch * seq * measured / total:F0} | {total / measured:F2} s | {reduce / measured:F3} s | {bytes / 1e6:F1} MB |");
            }
        }
        finally
        {
            ProcessGroups.Shutdown();
        }
    }
}
