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
    public void IpoLogsRewardsAndLogProbsFromSummedLogProbsLikeTrl()
    {
        // TRL (trl/trainer/dpo_trainer.py@f2cd57710ae3, _compute_loss) averages the log-ratios over answer tokens only
        // inside the IPO loss; rewards/* are β·(summed π − summed ref) and logps/* the summed π. Answers of different
        // lengths and a reference chosen so that the averaged and summed rewards rank pair 0 differently.
        var pairs = new[]
        {
            new TokenizedPreferencePair([1, 4, 5], [12, 13, 14, 15, 16, 2], [50, 2]),
            new TokenizedPreferencePair([1, 6], [20, 2], [55, 56, 57, 2]),
        };
        using var model = TestModels.Create("llama");
        using var scored = PreferenceCollator.Collate(pairs, CPU);
        var sums = SequenceLogProbs.Compute(model, scored).to(ScalarType.Float64).data<double>().ToArray();   // c0, c1, r0, r1
        double[] lengths = [6, 2, 2, 4];
        double[] reference = [sums[0] - 3.0, sums[1] + 0.5, sums[2] - 1.2, sums[3] - 0.25];   // Δ = π − ref: 3, −0.5, 1.2, 0.25
        var withReference = pairs.Select((p, i) => p with { ReferenceChosenLogProb = reference[i], ReferenceRejectedLogProb = reference[2 + i] }).ToArray();
        const double beta = 0.5;
        var objective = new DpoObjective(new DpoSettings(Beta: beta, LossType: DpoLossType.Ipo), DpoReference.Precomputed);
        using var batch = PreferenceCollator.Collate(withReference, CPU);
        var output = objective.Compute(model, batch);
        double Sum(string name) => output.MetricSums![name].to(ScalarType.Float64).item<double>();
        // Rewards β·Δ: chosen 1.5 and −0.25, rejected 0.6 and 0.125 (averaged: 0.25, −0.125 and 0.3, 0.03125).
        Assert.Equal(1.5 - 0.25, Sum("rewards/chosen"), 4);
        Assert.Equal(0.6 + 0.125, Sum("rewards/rejected"), 4);
        Assert.Equal(1.25 - 0.725, Sum("rewards/margins"), 4);
        Assert.Equal(1, output.Correct.item<long>());   // pair 0 only: 1.5 > 0.6 (averaged it would be 0.25 < 0.3)
        Assert.Equal(sums[0] + sums[1], Sum("logps/chosen"), 4);
        Assert.Equal(sums[2] + sums[3], Sum("logps/rejected"), 4);
        // The loss still compares averages: ((3/6 − 1.2/2) − 1)² + ((−0.5/2 − 0.25/4) − 1)² = 1.21 + 1.72265625.
        Assert.Equal(1.21 + 1.72265625, output.LossSum.to(ScalarType.Float64).item<double>(), 4);
        Assert.Equal(lengths, batch.CompletionLengths.to(ScalarType.Float64).data<double>().ToArray());
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
        foreach (var (type, smoothing) in new[] { ("ipo", 0.0), ("robust", 0.2), ("sigmoid", 0.2) })
        {
            using var dir = new TempDir();
            var (model, adapter) = LoraModel();
            using var _ = model;
            var options = Options(dir.Path) with { LossType = type, LabelSmoothing = smoothing, MaxSteps = 12, Beta = 0.5 };
            Train(model, adapter, options, RulePairs(16, seed: 8), RulePairs(8, seed: 9));
            var records = Metrics(dir.Path);
            // At x = 0: IPO gives (0 − 1/(2·0.5))² = 1; robust and conservative DPO still give ln 2.
            Assert.Equal(type == "ipo" ? 1.0 : Math.Log(2), records[0]["loss"]!.GetValue<double>(), 5);
            Assert.True(records[^1]["val_rewards/margins"]!.GetValue<double>() > 0, type);
        }
    }
}
