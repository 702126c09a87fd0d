using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Generation;
using SharpTune.Peft;
using SharpTune.Tests.Peft;
using SharpTune.Tests.Serving;
using static TorchSharp.torch;

namespace SharpTune.Tests.Support;

/// <summary>
/// One adapter method through the real `sharptune` executable on a real Hub folder (tinystories-656k): the scenario the
/// method CLI tests share, leaving each test its method's settings and its checks of the saved adapter.
/// </summary>
internal static class AdapterMethodCli
{
    /// <summary>The prompt `generate` and the merge comparison use.</summary>
    public const string Prompt = "Once upon a time, Tom had a";

    /// <summary>
    /// `train --method <paramref name="method"/>` (YAML settings plus <paramref name="flags"/>) for half of
    /// <paramref name="steps"/>, `train --resume` to <paramref name="steps"/>, asserted equal to the uninterrupted run
    /// (same losses, same adapter bit for bit); the saved config's peft_type is the method's, then
    /// <paramref name="checkSaved"/> sees the saved config and tensors; `generate --adapter` gives the library's greedy ids
    /// for base + adapter; `merge` computes what base + adapter computes (and differs from the base); the GGUF adapter
    /// export refuses it naming the method and "merge". Returns the uninterrupted run's losses.
    /// </summary>
    public static List<double> TrainResumeGenerateMergeAndRefuseGguf(string method, string settingsYaml, string[] flags, int steps,
        Action<JsonNode, IReadOnlyList<(string Name, long[] Shape, float[] Values)>> checkSaved)
    {
        using var dir = new TempDir();
        var model = Path.Combine(TestAssets.SharedDir, "models", "tinystories-656k");
        var run = Path.Combine(dir.Path, "run");
        // A constant rate: the run stopped halfway and resumed then follows the schedule of the uninterrupted run.
        var settings = dir.File("settings.yaml",
            $"method: {method}\nvalidation_fraction: 0\nsave_every: {steps / 2}\nwarmup_steps: 0\nlr_schedule: constant\n{settingsYaml}");
        var data = StoryData.Write(dir.Path);
        string[] common = ["--config", settings, "--model", model, "--data", data, "--output", run, "--batch-size", "4", "--lr", "0.05", "--seed", "3", .. flags];
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common, "--max-steps", $"{steps / 2}"]), "train");
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common, "--max-steps", $"{steps}", "--resume"]), "train --resume");
        var adapter = Path.Combine(run, "final");
        // Resumed (with any dropout on), the run is the uninterrupted one: same losses, same adapter bit for bit
        // (dropout masks come from the restored generator state).
        var uninterrupted = Path.Combine(dir.Path, "uninterrupted");
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common.Select(a => a == run ? uninterrupted : a), "--max-steps", $"{steps}"]), "train (uninterrupted)");
        KilledRun.AssertResumedAsUninterrupted(uninterrupted, Path.Combine(uninterrupted, "final"), run, adapter, steps: steps);

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapter, AdapterFiles.ConfigFileName)))!;
        Assert.Equal(method.ToUpperInvariant(), (string)config["peft_type"]!);
        var (_, tensors) = F32SafetensorsStore.ReadHeader(Path.Combine(adapter, AdapterFiles.WeightsFileName));
        checkSaved(config, tensors);

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
        return KilledRun.Losses(uninterrupted);
    }
}
