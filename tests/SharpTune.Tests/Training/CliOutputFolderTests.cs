using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Training;

/// <summary>
/// Output folders that already hold something: `train --output` on an earlier run is continued, replaced on request,
/// never mixed; `merge --out` never replaces files it was not asked to.
/// </summary>
public sealed class CliOutputFolderTests
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
        var first = Train(2, "--resume");   // nothing to resume yet: it says so and starts at step 0
        Assert.True(first.Code == 0, first.Stderr);
        Assert.Contains("no checkpoint to resume", first.Stderr);
        var finalAdapter = File.ReadAllBytes(Directory.GetFiles(Path.Combine(run, "final"), "*.safetensors").Single());

        var refused = Train(1);
        Assert.Equal(2, refused.Code);
        Assert.Contains("holds an earlier run", refused.Stderr);
        Assert.Equal(finalAdapter, File.ReadAllBytes(Directory.GetFiles(Path.Combine(run, "final"), "*.safetensors").Single()));   // untouched

        var overwritten = Train(1, "--overwrite");
        Assert.True(overwritten.Code == 0, overwritten.Stderr);
        // Only the new run's checkpoint is left for a later --resume to find, not the earlier run's step 2.
        Assert.Equal(["step-000001"], Directory.GetDirectories(Path.Combine(run, "checkpoints")).Select(Path.GetFileName));

        // merge into a folder holding someone's files: refused, the files kept; with --overwrite it writes there.
        var busy = Path.Combine(dir.Path, "busy");
        Directory.CreateDirectory(busy);
        File.WriteAllText(Path.Combine(busy, "config.json"), "{\"mine\": true}");
        var (code, _, stderr) = SharpTuneCli.Run("merge", "--model", TestAssets.Stories260K, "--adapter", Path.Combine(run, "final"), "--out", busy);
        Assert.Equal(2, code);
        Assert.Contains("--overwrite", stderr);
        Assert.Equal("{\"mine\": true}", File.ReadAllText(Path.Combine(busy, "config.json")));
        (code, _, stderr) = SharpTuneCli.Run("merge", "--model", TestAssets.Stories260K, "--adapter", Path.Combine(run, "final"), "--out", busy, "--overwrite");
        Assert.True(code == 0, stderr);
        Assert.NotEmpty(Directory.GetFiles(busy, "model*.safetensors"));
    }
}
