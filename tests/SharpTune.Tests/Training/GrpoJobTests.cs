using System.Text.Json.Nodes;
using SharpTune.Peft;
using SharpTune.Tests.Support;
using SharpTune.Tracking;
using SharpTune.Training;
using SharpTune.Training.Rewards;

namespace SharpTune.Tests.Training;

/// <summary>`objective: grpo` end to end on the real stories260K model: metrics and logs, exact resume, failing rewards.</summary>
public class GrpoJobTests
{
    private static readonly string[] Names = ["Lily", "Tom", "Ben", "Sue", "Max", "Amy"];

    internal static string WritePrompts(string path, int count)
    {
        File.WriteAllLines(path, Enumerable.Range(0, count).Select(i => new JsonObject
        {
            ["prompt"] = $"Once upon a time, {Names[i % Names.Length]} had a ball.", ["answer"] = Names[i % Names.Length],
        }.ToJsonString()));
        return path;
    }

    internal static TrainingOptions Options(TempDir dir, string output = "run") => new()
    {
        Model = TestAssets.Stories260K, Data = WritePrompts(dir.File("prompts.jsonl"), 12), ValidationFraction = 0, Output = dir.File(output),
        Objective = "grpo", Method = "lora", TargetModules = "all-linear", LearningRate = 2e-2, LrSchedule = "constant", WarmupSteps = 0,
        MicroBatchSize = 4, GradientAccumulation = 2, NumGenerations = 4, MaxCompletionLength = 8, MaxSteps = 4, SaveEvery = 1,
        KeepCheckpoints = 10, Rewards = ["regex=0.5"], RewardPattern = "happy|was", Seed = 5,
    };

    /// <summary>A reward with a graded signal: the share of the answer's letters the completion contains.</summary>
    internal sealed class LetterReward : PerSampleReward
    {
        public override string Name => "letters";
        public override double? Score(RewardSample sample) =>
            sample.Fields["answer"]!.GetValue<string>().ToLowerInvariant().Count(c => sample.Completion.ToLowerInvariant().Contains(c)) / 4.0;
    }

    internal static RewardSources Custom(IRewardFunction function) => new(Custom: [new WeightedReward(function)]);

    [SharedAssetFact("models/stories260K")]
    public void GrpoLogsTrlsMetricsCompletionsAndAServableAdapter()
    {
        using var dir = new TempDir();
        var options = Options(dir) with { MaxSteps = 2, NumIterations = 2, Beta = 0.05, Epsilon = 0.2, EpsilonHigh = 0.28 };
        var result = FineTuneJob.Run(options, rewards: Custom(new LetterReward()));
        var records = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));
        Assert.Equal(2, records.Count);
        foreach (var key in new[] { "loss", "reward", "reward_std", "frac_reward_zero_std", "rewards/regex/mean", "rewards/letters/mean",
                     "rewards/letters/std", "kl", "entropy", "clip_ratio/region_mean", "completions/mean_length", "completions/clipped_ratio",
                     "time/generation_s", "time/optimization_s" })
            Assert.True(records[^1].ContainsKey(key), key);
        // μ = 2: both steps use the same generation batch (same rewards); the second pass moved away from the sampling
        // policy, the first starts exactly on it with a KL of 0 to the (adapter-disabled) reference.
        Assert.Equal(records[0]["reward"]!.GetValue<double>(), records[1]["reward"]!.GetValue<double>());
        Assert.Equal(0, records[0]["kl"]!.GetValue<double>(), 6);
        Assert.True(records[1]["kl"]!.GetValue<double>() > 0);
        // The summed reward is the weighted sum of the functions' means.
        Assert.Equal(0.5 * records[0]["rewards/regex/mean"]!.GetValue<double>() + records[0]["rewards/letters/mean"]!.GetValue<double>(),
            records[0]["reward"]!.GetValue<double>(), 9);
        var completions = File.ReadAllLines(Path.Combine(options.Output, "completions.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(8, completions.Count);   // 2 prompts × G = 4, logged at the generation step
        Assert.All(completions, c => Assert.NotNull(c["rewards"]!["letters"]));
        Assert.True(File.Exists(Path.Combine(options.Output, "reward.png")));
        Assert.True(File.Exists(Path.Combine(result.FinalDirectory, AdapterFiles.ConfigFileName)));
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData(1)]
    [InlineData(2)]
    public void AnInterruptedRunResumesExactlyIncludingTheSamplingRng(int numIterations)
    {
        using var dir = new TempDir();
        AssertAnInterruptedRunResumesExactly(dir, Options(dir) with { NumIterations = numIterations },
            "loss", "reward", "grad_norm", "entropy", "completions/mean_length");
    }

    /// <summary>
    /// Runs <paramref name="options"/> through, then again cancelled after step 3 and resumed: the same
    /// <paramref name="metricKeys"/> at every step and the same completions (the sampling RNG is restored); with
    /// μ = 2 step 3 ends mid-generation, so its checkpoint carries the generation batch.
    /// </summary>
    internal static void AssertAnInterruptedRunResumesExactly(TempDir dir, TrainingOptions options, params string[] metricKeys)
    {
        FineTuneJob.Run(options, rewards: Custom(new LetterReward()));
        var expected = MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"));

        var interrupted = options with { Output = dir.File("interrupted") };
        using var cancel = new CancellationTokenSource();
        var progress = new SynchronousProgress(p => { if (p.Step == 3) cancel.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => FineTuneJob.Run(interrupted, false, progress, null, cancel.Token, Custom(new LetterReward())));
        // Step 3 ends mid-generation when μ = 2: its checkpoint carries the generation batch.
        Assert.Equal(options.NumIterations == 2, File.Exists(Path.Combine(TrainingCheckpoint.List(interrupted.Output)[^1], GrpoBuffer.FileName)));
        FineTuneJob.Run(interrupted, resume: true, rewards: Custom(new LetterReward()));
        var resumed = MetricsLog.ReadAll(Path.Combine(interrupted.Output, "metrics.jsonl"));

        Assert.Equal(expected.Count, resumed.Count);
        foreach (var key in metricKeys)
            for (var i = 0; i < expected.Count; i++)
                Assert.Equal(expected[i][key]!.GetValue<double>(), resumed[i][key]!.GetValue<double>(), 6);
        Assert.Equal(File.ReadAllLines(Path.Combine(options.Output, "completions.jsonl")),
            File.ReadAllLines(Path.Combine(interrupted.Output, "completions.jsonl")));
    }

    private sealed class FailingReward(bool nan) : PerSampleReward
    {
        public override string Name => nan ? "returns-nan" : "throws";
        public override double? Score(RewardSample sample) => sample.Index != 5 ? 1.0
            : nan ? double.NaN : throw new InvalidOperationException("division by zero in my reward");
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData(false)]
    [InlineData(true)]
    public void AFailingRewardNamesItselfAndTheSampleAndNoUpdateIsMade(bool nan)
    {
        using var dir = new TempDir();
        var options = Options(dir) with { SaveEvery = 0 };
        var error = Assert.Throws<RewardFunctionException>(() => FineTuneJob.Run(options, rewards: Custom(new FailingReward(nan))));
        Assert.Contains(nan ? "'returns-nan'" : "'throws'", error.Message);
        Assert.Contains("completion 5", error.Message);
        Assert.Contains("prompts.jsonl:", error.Message);
        Assert.Contains("step 1", error.Message);
        if (!nan) Assert.Contains("division by zero in my reward", error.Message);
        else Assert.Contains("NaN", error.Message);
        // Nothing was applied: no step was logged, no checkpoint or final adapter written.
        var metrics = Path.Combine(options.Output, "metrics.jsonl");
        Assert.True(!File.Exists(metrics) || File.ReadAllText(metrics).Length == 0);
        Assert.Empty(TrainingCheckpoint.List(options.Output));
        Assert.False(Directory.Exists(Path.Combine(options.Output, "final")));
    }

    [SharedAssetFact("models/stories260K")]
    public void BadSettingsFailBeforeAnyWork()
    {
        using var dir = new TempDir();
        var options = Options(dir);
        Assert.Contains("multiple of num_generations", Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options with { NumGenerations = 3 })).Message);
        Assert.Contains("dr_grpo", Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options with { LossType = "ppo" })).Message);
        Assert.Contains("reward", Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options with { Rewards = ["nope"] })).Message);
        Assert.Contains("reward_pattern", Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options with { RewardPattern = null })).Message);
    }

    internal sealed class SynchronousProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
