using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using SharpTune.Training;

namespace SharpTune.Tests.Training;

/// <summary>GKD's flags through the real `sharptune train`, and the shared, nullable temperature's defaults per objective.</summary>
public class GkdCliTests
{
    [SharedAssetFact("models/stories260K")]
    public void TheFlagsReachTheRunAndItsSavedConfig()
    {
        using var dir = new TempDir();
        var output = dir.File("run");
        var run = SharpTuneCli.Run("train", "--objective", "gkd", "--model", TestAssets.Stories260K, "--teacher", TestAssets.Stories260K,
            "--data", StoryData.Write(dir.Path), "--output", output, "--lmbda", "0.25", "--seq-kd", "true", "--max-new-tokens", "7",
            "--temperature", "0.7", "--beta", "0.1", "--max-steps", "1", "--batch-size", "2", "--seed", "3");
        Assert.True(run.ExitCode == 0, $"sharptune train exited with {run.ExitCode}:\n{run.Stdout}\n{run.Stderr}");
        var saved = TrainingConfigFile.Load(Path.Combine(output, "config.yaml"));
        Assert.Equal(new GkdSettings(TestAssets.Stories260K, 0.25, 0.1, 0.7, 7, true), GkdSettings.From(saved));
        Assert.True(File.Exists(Path.Combine(output, "final", "adapter_model.safetensors")));
    }

    [Fact]
    public void WithoutATemperatureGrpoSamplesAtOneAndGkdAtPointNine()
    {
        var grpo = new TrainingOptions { Objective = "grpo", MicroBatchSize = 8 };
        Assert.Null(grpo.Temperature);
        Assert.Equal(1.0, GrpoSettings.From(grpo).Temperature);
        Assert.Equal(0.6, GrpoSettings.From(grpo with { Temperature = 0.6 }).Temperature);
        Assert.Equal(0.9, GkdSettings.From(new TrainingOptions { Objective = "gkd", Teacher = "t" }).Temperature);
    }
}
