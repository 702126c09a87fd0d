using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary><c>optim: adamw_8bit</c> through the trainer, its checkpoints, the config file and the CLI.</summary>
public class AdamW8bitTrainingTests
{
    private static TokenizedExample Example(int[] ids) => new(ids, ids.Select((_, i) => i >= 1).ToArray());

    private static IReadOnlyList<TokenizedExample> MemorisationSet() =>
    [
        Example([1, 10, 11, 12, 13, 14, 15, 16, 2]),
        Example([1, 20, 21, 22, 23, 2]),
        Example([1, 30, 31, 32, 33, 34, 35, 2]),
        Example([1, 40, 41, 42, 2]),
    ];

    private static List<(string, TorchSharp.Modules.Parameter)> AllParameters(CausalLanguageModel model) =>
        model.named_parameters().Select(p => (p.name, p.parameter)).ToList();

    private static List<double> Losses(string runDir) =>
        MetricsLog.ReadAll(Path.Combine(runDir, "metrics.jsonl")).Select(r => r["loss"]!.GetValue<double>()).ToList();

    /// <summary>TrainerTests.AKilledRunResumesWithTheSameLossSequence with 8-bit state: the codes and absmax come back exactly.</summary>
    [Fact]
    public void AKilledEightBitRunResumesWithTheSameLossSequenceAndWeights()
    {
        using var uninterruptedDir = new TempDir();
        using var resumedDir = new TempDir();
        var options = new TrainingOptions
        {
            Output = uninterruptedDir.Path, Method = "full", Optim = "adamw_8bit", LearningRate = 3e-3, LrSchedule = "constant",
            WarmupSteps = 0, WeightDecay = 0.01, MicroBatchSize = 2, MaxSteps = 8, SaveEvery = 3, EvalEvery = 100, Seed = 5,
        };
        Dictionary<string, float[]> expectedWeights;
        using (var model = TestModels.Create("llama"))
        {
            new Trainer(model, AllParameters(model), options, _ => { }).Train(MemorisationSet(), []);
            expectedWeights = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().data<float>().ToArray());
        }
        var expected = Losses(uninterruptedDir.Path);

        var killed = options with { Output = resumedDir.Path };
        using (var model = TestModels.Create("llama"))
        {
            using var cancel = new CancellationTokenSource();
            var progress = new SynchronousProgress<TrainingProgress>(p => { if (p.Step == 5) cancel.Cancel(); });
            Assert.ThrowsAny<OperationCanceledException>(() =>
                new Trainer(model, AllParameters(model), killed, _ => { }).Train(MemorisationSet(), [], progress: progress, cancellationToken: cancel.Token));
        }
        // The checkpoint holds the 8-bit state as bitsandbytes names it: uint8 codes and fp32 absmax.
        using (var state = SafetensorsFile.Open(Path.Combine(TrainingCheckpoint.List(resumedDir.Path)[^1], "optimizer.safetensors")))
        {
            var codes = state.Tensors.Values.Where(t => t.Name.EndsWith(".state1", StringComparison.Ordinal)).ToArray();
            Assert.Contains(codes, t => t.DType == SafetensorsDType.U8);
            Assert.All(state.Tensors.Values.Where(t => t.Name.EndsWith(".absmax1", StringComparison.Ordinal)), t => Assert.Equal(SafetensorsDType.F32, t.DType));
            Assert.DoesNotContain(state.Tensors.Keys, k => k.EndsWith(".exp_avg", StringComparison.Ordinal));
        }
        using (var model = TestModels.Create("llama", seed: 999))   // a fresh process: weights come from the checkpoint
        {
            new Trainer(model, AllParameters(model), killed, _ => { }).Train(MemorisationSet(), [], resume: true);
            foreach (var (name, parameter) in model.named_parameters())
                Assert.Equal(expectedWeights[name], parameter.detach().data<float>().ToArray());
        }
        Assert.Equal(expected, Losses(resumedDir.Path));
    }

    [Fact]
    public void AnFp32CheckpointDoesNotResumeAnEightBitRun()
    {
        using var dir = new TempDir();
        var options = new TrainingOptions
        {
            Output = dir.Path, Method = "full", LearningRate = 3e-3, LrSchedule = "constant", WarmupSteps = 0,
            MicroBatchSize = 2, MaxSteps = 3, SaveEvery = 3, EvalEvery = 100,
        };
        using (var model = TestModels.Create("llama"))
            new Trainer(model, AllParameters(model), options, _ => { }).Train(MemorisationSet(), []);
        using var again = TestModels.Create("llama");
        var e = Assert.Throws<InvalidDataException>(() =>
            new Trainer(again, AllParameters(again), options with { Optim = "adamw_8bit", MaxSteps = 6 }, _ => { }).Train(MemorisationSet(), [], resume: true));
        Assert.Contains("another optim", e.Message);
    }

    [Fact]
    public void ConfigFileReadsOptimAndValidationNamesIt()
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, "config.yaml");
        File.WriteAllText(path, "model: m\ndata: d.jsonl\noptim: paged_adamw_8bit\n");
        Assert.Equal("paged_adamw_8bit", TrainingConfigFile.Load(path).Optim);
        Assert.Equal("adamw_torch", new TrainingOptions().Optim);
        var e = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(new TrainingOptions { Model = "m", Data = "d", Optim = "adafactor" }));
        Assert.Contains("optim (--optim) must be one of adamw_torch", e.Message);
    }

    /// <summary>
    /// Full fine-tuning of the real stories260K for 12 steps through `sharptune train --optim`: the 8-bit optimizer lowers
    /// the loss as adamw_torch does (its last loss within 10% of adamw_torch's, both well below the first).
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void EightBitFullFineTuningOfStories260KLowersTheLossLikeAdamWTorch()
    {
        using var dir = new TempDir();
        var data = StoryData.Write(dir.Path);
        List<double> Train(string optim)
        {
            var run = Path.Combine(dir.Path, optim);
            var (code, _, stderr) = SharpTuneCli.Run("train", "--model", TestAssets.Stories260K, "--data", data, "--output", run,
                "--method", "full", "--optim", optim, "--max-steps", "12", "--lr", "2e-3", "--batch-size", "8", "--eval-every", "100");
            Assert.True(code == 0, stderr);
            Assert.Equal(optim, TrainingConfigFile.Load(Path.Combine(run, "config.yaml")).Optim);
            return Losses(run);
        }
        var torch = Train("adamw_torch");
        var eight = Train("adamw_8bit");
        Assert.True(torch[^1] < torch[0] * 0.8, $"adamw_torch: {torch[0]} → {torch[^1]}");
        Assert.True(eight[^1] < eight[0] * 0.8, $"adamw_8bit: {eight[0]} → {eight[^1]}");
        Assert.True(Math.Abs(eight[^1] - torch[^1]) < 0.1 * torch[^1], $"adamw_8bit ends at {eight[^1]}, adamw_torch at {torch[^1]}");
    }
}
