using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>DPO on the common trainer with tiny models: learning, the ln 2 start, exact resume, pair-normalised accumulation.</summary>
public class DpoTrainingTests
{
    /// <summary>
    /// A toy preference rule: chosen completions use tokens 10–29, rejected ones 50–69, after a random prompt. Held-out
    /// pairs have fresh random prompts and completions, so only the rule carries over.
    /// </summary>
    internal static IReadOnlyList<TokenizedPreferencePair> RulePairs(int count, int seed)
    {
        var rng = new Random(seed);
        int[] Completion(int low) => [rng.Next(low, low + 20), rng.Next(low, low + 20), rng.Next(low, low + 20), 2];
        return Enumerable.Range(0, count)
            .Select(_ => new TokenizedPreferencePair([1, rng.Next(3, 9), rng.Next(3, 9)], Completion(10), Completion(50)))
            .ToArray();
    }

    internal static (CausalLanguageModel Model, IPeftAdapter Adapter) LoraModel(long seed = 1234, LoraInit init = LoraInit.Default)
    {
        var model = TestModels.Create("llama", seed);
        var adapter = new LoraAdapter(new LoraConfig { R = 8, LoraAlpha = 16, TargetModules = TargetModules.AllLinear, InitLoraWeights = init });
        adapter.Inject(model);
        return (model, adapter);
    }

    private static TrainingOptions Options(string output) => new()
    {
        Output = output, Method = "lora", LearningRate = 1e-2, LrSchedule = "constant", WarmupSteps = 0, MicroBatchSize = 4,
        MaxSteps = 24, EvalEvery = 6, SaveEvery = 6, Seed = 3, Beta = 0.1,
    };

    private static TrainingResult Train(CausalLanguageModel model, IPeftAdapter adapter, TrainingOptions options,
        IReadOnlyList<TokenizedPreferencePair> train, IReadOnlyList<TokenizedPreferencePair> validation, bool resume = false,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default) =>
        new Trainer(model, adapter.TrainableParameters, options, _ => { }, new DpoObjective(DpoSettings.From(options), DpoReference.AdapterDisabled(adapter)))
            .Train(train, validation, PreferenceCollator.Collate, resume, progress, cancel);

    private static List<JsonObject> Metrics(string runDir) => MetricsLog.ReadAll(Path.Combine(runDir, "metrics.jsonl")).ToList();

    [Fact]
    public void LoraDpoLearnsThePreferenceOnHeldOutPairsFromLnTwo()
    {
        using var dir = new TempDir();
        var (model, adapter) = LoraModel();
        using var _ = model;
        var options = Options(dir.Path);
        Train(model, adapter, options, RulePairs(32, seed: 1), RulePairs(16, seed: 2));

        var records = Metrics(dir.Path);
        // Step 1: LoRA's B starts at zero, so policy == reference: x = 0 and the loss is −log σ(0) = ln 2 exactly.
        Assert.Equal(Math.Log(2), records[0]["loss"]!.GetValue<double>(), 5);
        Assert.Equal(0, records[0]["rewards/margins"]!.GetValue<double>(), 6);
        var evaluations = records.Where(r => r.ContainsKey("val_loss")).ToList();
        Assert.Equal(4, evaluations.Count);
        var finalAccuracy = evaluations[^1]["val_rewards/accuracies"]!.GetValue<double>();
        var margins = evaluations.Select(r => r["val_rewards/margins"]!.GetValue<double>()).ToList();
        Assert.True(finalAccuracy >= 0.85, $"held-out preference accuracy {finalAccuracy}");
        // With a constant 1e-2 rate the held-out margin peaks and then wobbles as the 32 training pairs are overfitted:
        // every evaluation prefers the chosen side, and the margin grows beyond the first evaluation's.
        Assert.True(margins.All(m => m > 0) && margins.Skip(1).Max() > margins[0], $"held-out reward margins {string.Join(", ", margins)}");
        var losses = evaluations.Select(r => r["val_loss"]!.GetValue<double>()).ToList();
        Assert.True(losses.Min() < Math.Log(2) - 0.05, $"held-out DPO losses {string.Join(", ", losses)}");
        foreach (var key in new[] { "rewards/chosen", "rewards/rejected", "rewards/accuracies", "logps/chosen", "logps/rejected" })
            Assert.True(records[^1].ContainsKey(key), key);
        Assert.True(records[^1]["rewards/chosen"]!.GetValue<double>() > records[^1]["rewards/rejected"]!.GetValue<double>());
    }

    [Fact]
    public void AKilledDpoRunResumesWithTheSameLossSequence()
    {
        using var uninterrupted = new TempDir();
        using var resumedDir = new TempDir();
        var options = Options(uninterrupted.Path) with { MaxSteps = 8, SaveEvery = 3, EvalEvery = 100, GradientAccumulation = 2, MicroBatchSize = 2 };
        var train = RulePairs(12, seed: 4);
        var (model, adapter) = LoraModel();
        using (model) Train(model, adapter, options, train, []);
        var expected = Metrics(uninterrupted.Path).Select(r => r["loss"]!.GetValue<double>()).ToList();

        var killed = options with { Output = resumedDir.Path };
        (model, adapter) = LoraModel();
        using (model)
        {
            using var cancel = new CancellationTokenSource();
            var progress = new SynchronousProgress<TrainingProgress>(p => { if (p.Step == 5) cancel.Cancel(); });
            Assert.ThrowsAny<OperationCanceledException>(() => Train(model, adapter, killed, train, [], progress: progress, cancel: cancel.Token));
        }
        (model, adapter) = LoraModel(init: LoraInit.Random);   // a fresh process: adapter weights come from the checkpoint
        using (model) Train(model, adapter, killed, train, [], resume: true);
        Assert.Equal(expected, Metrics(resumedDir.Path).Select(r => r["loss"]!.GetValue<double>()).ToList());
    }

    [Fact]
    public void AccumulatingPairsInTwoMicroBatchesEqualsOneBatch()
    {
        // Full fine-tuning against a differently initialised frozen reference, so the loss is not the trivial ln 2, and
        // completions of different lengths, so a per-token normalisation would differ from the per-pair one.
        var pairs = RulePairs(4, seed: 7).Select((p, i) => p with { ChosenIds = [.. p.ChosenIds.Take(1 + i), 2] }).ToArray();
        using var model = TestModels.Create("llama");
        using var reference = TestModels.Create("llama", seed: 77);
        var objective = new DpoObjective(new DpoSettings(Beta: 0.5), DpoReference.FrozenModel(reference));
        Dictionary<string, Tensor> Gradients(int micro)
        {
            foreach (var p in model.parameters()) p.grad = null;
            Trainer.AccumulateGradients(model, objective, pairs.Chunk(micro).Select(c => PreferenceCollator.Collate(c, CPU)).ToArray());
            return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        }
        var whole = Gradients(4);
        var accumulated = Gradients(2);
        foreach (var (name, value) in whole)
            Assert.True(value.allclose(accumulated[name], rtol: 1e-4, atol: 1e-7), $"{name}: gradient differs between 4×1 and 2×2 pairs");
        Assert.All(reference.parameters(), p => Assert.Null(p.grad));
    }

    [Fact]
    public void FullFineTuningWithPrecomputedReferenceStartsAtLnTwoAndLearns()
    {
        using var dir = new TempDir();
        using var model = TestModels.Create("llama");
        var options = Options(dir.Path) with { Method = "full", LearningRate = 1e-3, MaxSteps = 12, PrecomputeRefLogProbs = true };
        var train = PreferenceReferenceCache.Precompute(RulePairs(16, seed: 5), model, DpoReference.PolicyBeforeTraining, 4);
        var validation = PreferenceReferenceCache.Precompute(RulePairs(8, seed: 6), model, DpoReference.PolicyBeforeTraining, 4);
        Assert.All(train, p => Assert.NotNull(p.ReferenceChosenLogProb));
        var trainable = model.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        new Trainer(model, trainable, options, _ => { }, new DpoObjective(DpoSettings.From(options), DpoReference.Precomputed))
            .Train(train, validation, PreferenceCollator.Collate);
        var records = Metrics(dir.Path);
        Assert.Equal(Math.Log(2), records[0]["loss"]!.GetValue<double>(), 5);
        Assert.True(records[^1]["val_rewards/accuracies"]!.GetValue<double>() >= 0.75);
        Assert.True(records[^1]["val_rewards/margins"]!.GetValue<double>() > 0);
    }

    [Fact]
    public void IpoAndLabelSmoothingTrainThroughTheSameLoop()
    {
        foreach (var (type, smoothing) in new[] { ("ipo", 0.0), ("sigmoid", 0.2) })
        {
            using var dir = new TempDir();
            var (model, adapter) = LoraModel();
            using var _ = model;
            var options = Options(dir.Path) with { LossType = type, LabelSmoothing = smoothing, MaxSteps = 12, Beta = 0.5 };
            Train(model, adapter, options, RulePairs(16, seed: 8), RulePairs(8, seed: 9));
            var records = Metrics(dir.Path);
            // At x = 0: IPO gives (0 − 1/(2·0.5))² = 1; smoothed sigmoid still gives ln 2.
            Assert.Equal(type == "ipo" ? 1.0 : Math.Log(2), records[0]["loss"]!.GetValue<double>(), 5);
            Assert.True(records[^1]["val_rewards/margins"]!.GetValue<double>() > 0, type);
        }
    }
}
