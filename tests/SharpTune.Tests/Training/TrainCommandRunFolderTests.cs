using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Training;

/// <summary>`sharptune train --output` on a folder that holds an earlier run: continued, replaced on request, never mixed.</summary>
public sealed class TrainCommandRunFolderTests
{
    [SharedAssetFact("models/stories260K")]
    public void AnEarlierRunIsRefusedUnlessResumedOrOverwrittenAndOverwritingDropsItsCheckpoints()
    {
        using var dir = new TempDir();
        var run = Path.Combine(dir.Path, "run");
        var settings = dir.File("settings.yaml", "validation_fraction: 0\nsave_every: 1\nwarmup_steps: 0\n");
        var data = StoryData.Write(dir.Path);
        (int Code, string Stderr) Train(int steps, params string[] extra)
        {
            var (code, _, stderr) = SharpTuneCli.Run(["train", "--config", settings, "--model", TestAssets.Stories260K, "--data", data,
                "--output", run, "--method", "lora", "--max-steps", steps.ToString(), "--batch-size", "2", .. extra]);
            return (code, stderr);
        }
        var first = Train(2);
        Assert.True(first.Code == 0, first.Stderr);
        var finalAdapter = File.ReadAllBytes(Directory.GetFiles(Path.Combine(run, "final"), "*.safetensors").Single());

        var refused = Train(1);
        Assert.Equal(2, refused.Code);
        Assert.Contains("holds an earlier run", refused.Stderr);
        Assert.Equal(finalAdapter, File.ReadAllBytes(Directory.GetFiles(Path.Combine(run, "final"), "*.safetensors").Single()));   // untouched

        var overwritten = Train(1, "--overwrite");
        Assert.True(overwritten.Code == 0, overwritten.Stderr);
        // Only the new run's checkpoint is left for a later --resume to find, not the earlier run's step 2.
        Assert.Equal(["step-000001"], Directory.GetDirectories(Path.Combine(run, "checkpoints")).Select(Path.GetFileName));
    }
}
