using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Generation;
using SharpTune.Peft;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Vera;

/// <summary>
/// VeRA through the real `sharptune` executable on a real Hub folder (tinystories-656k): `train --method vera` (flags and
/// YAML), loss falling, `train --resume` equal to the uninterrupted run, `generate --adapter` answering as the library,
/// `merge` computing what base + adapter computes, and the GGUF adapter export refusing it with the way out.
/// </summary>
public class VeraCliTests
{
    private const string Prompt = "Once upon a time, Tom had a";

    [SharedAssetTheory("models/tinystories-656k")]
    [InlineData("vera_dropout: 0.1\n", new[] { "--lora-r", "64", "--vera-d-initial", "0.2", "--projection-prng-key", "5" }, true)]
    [InlineData("save_projection: false\nd_initial: 0.2\n", new[] { "--lora-r", "32" }, false)]
    public void TrainGenerateResumeAndMergeThroughTheExecutable(string yaml, string[] flags, bool projectionsSaved)
    {
        using var dir = new TempDir();
        var model = Path.Combine(TestAssets.SharedDir, "models", "tinystories-656k");
        var run = Path.Combine(dir.Path, "run");
        // A constant rate: the 2-step run resumed to 4 then follows the schedule of the uninterrupted 4-step run.
        var settings = dir.File("settings.yaml", $"method: vera\nvalidation_fraction: 0\nsave_every: 2\nwarmup_steps: 0\nlr_schedule: constant\n{yaml}");
        var data = StoryData.Write(dir.Path);
        string[] common = ["--config", settings, "--model", model, "--data", data, "--output", run, "--batch-size", "4", "--lr", "0.05", "--seed", "3", .. flags];
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common, "--max-steps", "2"]), "train");
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common, "--max-steps", "4", "--resume"]), "train --resume");
        var adapter = Path.Combine(run, "final");
        // Resumed (with vera_dropout on in the first case), the run is the uninterrupted one: same losses, same adapter bit for bit.
        var uninterrupted = Path.Combine(dir.Path, "uninterrupted");
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common.Select(a => a == run ? uninterrupted : a), "--max-steps", "4"]), "train (uninterrupted)");
        KilledRun.AssertResumedAsUninterrupted(uninterrupted, Path.Combine(uninterrupted, "final"), run, adapter, steps: 4);
        var losses = KilledRun.Losses(uninterrupted);
        Assert.True(losses[^1] < losses[0], $"loss went {losses[0]} → {losses[^1]}");

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapter, AdapterFiles.ConfigFileName)))!;
        Assert.Equal("VERA", (string)config["peft_type"]!);
        Assert.Equal(projectionsSaved, (bool)config["save_projection"]!);
        Assert.Equal(0.2, (double)config["d_initial"]!);
        Assert.Equal(projectionsSaved ? 5 : 0, (long)config["projection_prng_key"]!);
        Assert.Equal(projectionsSaved ? 0.1 : 0.0, (double)config["vera_dropout"]!);
        Assert.Equal(projectionsSaved ? 64 : 32, (int)config["r"]!);
        var (_, tensors) = F32SafetensorsStore.ReadHeader(Path.Combine(adapter, AdapterFiles.WeightsFileName));
        Assert.Contains(tensors, t => t.Name.EndsWith("layers.0.self_attn.q_proj.vera_lambda_b", StringComparison.Ordinal));
        Assert.Equal(projectionsSaved, tensors.Any(t => t.Name == "base_model.vera_A"));

        // generate --adapter gives the library's greedy ids for base + adapter
        var cliIds = SharpTuneCli.Ok(SharpTuneCli.Run("generate", "--model", model, "--adapter", adapter, "--prompt", Prompt, "--temperature", "0",
            "--max-tokens", "8", "--print-ids"), "generate").Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse);
        using (var loaded = LoadedModel.Load(model, adapter))
            Assert.Equal(loaded.CreateTextGenerator().Generate([Prompt], new GenerationOptions { MaxNewTokens = 8, Temperature = 0 })[0].Tokens, cliIds);

        var merged = Path.Combine(dir.Path, "merged");
        SharpTuneCli.Ok(SharpTuneCli.Run("merge", "--model", model, "--adapter", adapter, "--out", merged), "merge");
        using var mergedLogits = PromptLogits.Last(merged, Prompt);
        using var adapted = PromptLogits.Last(model, Prompt, adapter);
        using var original = PromptLogits.Last(model, Prompt);
        var mergeError = (mergedLogits - adapted).abs().max().item<float>();
        Assert.True(mergeError < 1e-4, $"merged vs base + adapter logits differ by {mergeError}");
        Assert.True((adapted - original).abs().max().item<float>() > 1e-3, "training did not change the model");

        // llama.cpp's adapter GGUF holds LoRA's A and B only: refused, pointing at merging first.
        var error = Assert.Throws<NotSupportedException>(() => GgufLoraExporter.Export(new GgufLoraExportOptions
            { AdapterDir = adapter, ModelDir = model, OutputPath = Path.Combine(dir.Path, "adapter.gguf") }));
        Assert.Contains("VERA", error.Message);
        Assert.Contains("merge", error.Message);
    }
}
