using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Generation;
using SharpTune.Peft;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Oft;

/// <summary>
/// OFT through the real `sharptune` executable on a real Hub folder (tinystories-656k, 128 inputs per attention
/// projection): `train --method oft` (flags and YAML), loss falling, `train --resume` equal to the uninterrupted run,
/// `generate --adapter` answering as the library, `merge` computing what base + adapter computes, and the GGUF adapter
/// export refusing it with the way out.
/// </summary>
public class OftCliTests
{
    private const string Prompt = "Once upon a time, Tom had a";

    [SharedAssetTheory("models/tinystories-656k")]
    // YAML keys and flags: 8 blocks of 16 (one row each, 120 elements); 4 blocks of 32 sharing one row (496 elements).
    [InlineData("oft_block_size: 16\nnum_cayley_neumann_terms: 6\n", new[] { "--coft", "true", "--oft-eps", "2" }, 8L, 120L, "r=0 oft_block_size=16 coft=true eps=2 block_share=false use_cayley_neumann=true num_cayley_neumann_terms=6")]
    [InlineData("oft_r: 4\nuse_cayley_neumann: false\n", new[] { "--block-share", "true" }, 1L, 496L, "r=4 oft_block_size=0 coft=false eps=6E-05 block_share=true use_cayley_neumann=false num_cayley_neumann_terms=5")]
    public void TrainResumeGenerateAndMergeThroughTheExecutable(string yaml, string[] flags, long rows, long elements, string fields)
    {
        using var dir = new TempDir();
        var model = Path.Combine(TestAssets.SharedDir, "models", "tinystories-656k");
        var run = Path.Combine(dir.Path, "run");
        var settings = dir.File("settings.yaml", $"method: oft\nvalidation_fraction: 0\nsave_every: 3\nwarmup_steps: 0\nlr_schedule: constant\n{yaml}");
        var data = StoryData.Write(dir.Path);
        string[] common = ["--config", settings, "--model", model, "--data", data, "--output", run, "--batch-size", "4", "--lr", "0.05", "--seed", "3", .. flags];
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common, "--max-steps", "3"]), "train");
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common, "--max-steps", "6", "--resume"]), "train --resume");
        var adapter = Path.Combine(run, "final");
        var uninterrupted = Path.Combine(dir.Path, "uninterrupted");
        SharpTuneCli.Ok(SharpTuneCli.Run(["train", .. common.Select(a => a == run ? uninterrupted : a), "--max-steps", "6"]), "train (uninterrupted)");
        KilledRun.AssertResumedAsUninterrupted(uninterrupted, Path.Combine(uninterrupted, "final"), run, adapter, steps: 6);
        var losses = KilledRun.Losses(uninterrupted);
        Assert.True(losses[^2..].Average() < losses[..2].Average(), $"loss did not fall: {string.Join(", ", losses)}");

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapter, AdapterFiles.ConfigFileName)))!;
        Assert.Equal("OFT", (string)config["peft_type"]!);
        Assert.Equal(fields, string.Join(" ", new[] { "r", "oft_block_size", "coft", "eps", "block_share", "use_cayley_neumann", "num_cayley_neumann_terms" }
            .Select(k => $"{k}={(config[k] is JsonValue v && v.TryGetValue<double>(out var d) ? d.ToString(System.Globalization.CultureInfo.InvariantCulture) : config[k]!.ToJsonString())}")));
        var (_, tensors) = F32SafetensorsStore.ReadHeader(Path.Combine(adapter, AdapterFiles.WeightsFileName));
        var q = tensors.Single(t => t.Name == "base_model.model.model.layers.0.self_attn.q_proj.oft_R.weight");
        Assert.Equal([rows, elements], q.Shape);

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

        var error = Assert.Throws<NotSupportedException>(() => GgufLoraExporter.Export(new GgufLoraExportOptions
            { AdapterDir = adapter, ModelDir = model, OutputPath = Path.Combine(dir.Path, "adapter.gguf") }));
        Assert.Contains("OFT", error.Message);
        Assert.Contains("merge", error.Message);
    }
}
