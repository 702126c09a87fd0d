using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Generation;
using SharpTune.Peft;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Lycoris;

/// <summary>
/// LoHa and LoKr through the real `sharptune` executable on a real Hub folder (tinystories-656k): `train --method`
/// (flags and YAML), `generate --adapter` answering as the library, `train --resume`, `merge` computing what base +
/// adapter computes, and the GGUF adapter export refusing them with the way out.
/// </summary>
public class LycorisCliTests
{
    private const string Prompt = "Once upon a time, Tom had a";

    [SharedAssetTheory("models/tinystories-656k")]
    [InlineData("loha", "rank_dropout: 0.1\nmodule_dropout: 0.1\n", new string[0], "hada_w1_a")]
    [InlineData("lokr", "rank_dropout: 0.1\nmodule_dropout: 0.1\nrank_dropout_scale: true\n", new[] { "--decompose-both", "true", "--lora-r", "2" }, "lokr_w1_a")]
    public void TrainGenerateResumeAndMergeThroughTheExecutable(string method, string yaml, string[] flags, string expectedTensor)
    {
        using var dir = new TempDir();
        var model = Path.Combine(TestAssets.SharedDir, "models", "tinystories-656k");
        var run = Path.Combine(dir.Path, "run");
        // A constant rate: the 2-step run resumed to 4 then follows the schedule of the uninterrupted 4-step run.
        var settings = dir.File("settings.yaml", $"method: {method}\nvalidation_fraction: 0\nsave_every: 2\nwarmup_steps: 0\nlr_schedule: constant\nlora_alpha: 16\n{yaml}");
        var data = StoryData.Write(dir.Path);
        string[] common = ["--config", settings, "--model", model, "--data", data, "--output", run, "--batch-size", "4", "--lr", "0.05", "--seed", "3", .. flags];
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common, "--max-steps", "2"]), "train");
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common, "--max-steps", "4", "--resume"]), "train --resume");
        var adapter = Path.Combine(run, "final");
        // Resumed with rank and module dropout on, the run is the uninterrupted one: same losses, same adapter bit for bit
        // (the dropout masks come from the restored generator state).
        var uninterrupted = Path.Combine(dir.Path, "uninterrupted");
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common.Select(a => a == run ? uninterrupted : a), "--max-steps", "4"]), "train (uninterrupted)");
        KilledRun.AssertResumedAsUninterrupted(uninterrupted, Path.Combine(uninterrupted, "final"), run, adapter, steps: 4);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapter, AdapterFiles.ConfigFileName)))!;
        Assert.Equal(method.ToUpperInvariant(), (string)config["peft_type"]!);
        Assert.Equal(0.1, (double)config["rank_dropout"]!);
        var (_, tensors) = F32SafetensorsStore.ReadHeader(Path.Combine(adapter, AdapterFiles.WeightsFileName));
        Assert.Contains(tensors, t => t.Name.EndsWith($"layers.0.self_attn.q_proj.{expectedTensor}", StringComparison.Ordinal));

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
        Assert.Contains(method.ToUpperInvariant(), error.Message);
        Assert.Contains("merge", error.Message);
    }
}
