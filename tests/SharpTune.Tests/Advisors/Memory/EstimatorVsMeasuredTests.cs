using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Tests.Serving;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace SharpTune.Tests.Advisors.Memory;

/// <summary>
/// The estimator against real SharpTune training steps, as a user checks it: `sharptune estimate --measure` in a fresh
/// process builds or loads the model, trains it for two optimizer steps (the trainer's own gradient accumulation,
/// clipping and AdamW) and reports the growth of its resident high-water mark beside the estimate. A fresh process
/// matters: inside a long-lived one, pages freed by earlier work and kept by the allocator are reused and hide a
/// varying part of the peak.
/// </summary>
public class EstimatorVsMeasuredTests(ITestOutputHelper output)
{
    /// <summary>|estimate − measured| / measured must stay under this.</summary>
    private const double Tolerance = 0.25;

    // A 4-layer Llama (d 384, GQA 6/2 heads, ffn 1024, vocab 4096) at batch 4 × 256 tokens: ~9M parameters, and
    // activations of the same order as weights + optimizer state, so both halves of the estimate are exercised.
    private static JsonObject Config() => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = 4096,
        ["hidden_size"] = 384, ["intermediate_size"] = 1024, ["num_hidden_layers"] = 4, ["num_attention_heads"] = 6,
        ["num_key_value_heads"] = 2, ["max_position_embeddings"] = 256, ["tie_word_embeddings"] = false,
    };

    /// <summary>
    /// The estimate counts the tensors alive at the peak. Under glibc with SharpTune's allocator settings (freed blocks
    /// kept for reuse, AllocatorTuning) the resident peak also holds the heap's free holes: 1.2-1.7× the live bytes on
    /// these runs, depending on the order of allocations, not on what training needs. Serving every block of 256 KiB
    /// or more from its own mapping, returned on free, makes the resident set follow the live bytes (5× slower training,
    /// so only for measuring).
    /// </summary>
    private static readonly Dictionary<string, string> LiveBytesAllocator = new()
    {
        ["SHARPTUNE_MALLOC_TUNING"] = "0", ["MALLOC_MMAP_THRESHOLD_"] = "262144",
    };

    public static TheoryData<string, string> Cases => new()
    {
        { "full", "f32" },
        { "lora", "bf16" },
        { "lora-nf4", "bf16" },
    };

    [ProcessMemoryTheory]
    [MemberData(nameof(Cases))]
    public void EstimatedPeakMatchesMeasuredPeak(string method, string dtype)
    {
        using var folder = new TempDir();
        var quantized = method.EndsWith("-nf4");
        string[] source;
        if (quantized)   // the quantized base is loaded as users load it: straight from a checkpoint, layer by layer
        {
            SharpTune.Runtime.TorchRuntime.EnsureInitialised();
            using (var model = ModelFactory.Create(ModelConfig.FromJson(Config()), ScalarType.BFloat16)) PretrainedModel.Save(model, folder.Path);
            source = ["--model", folder.Path, "--quantize", "nf4", "--gradient-checkpointing", "false"];
        }
        else
        {
            var configFile = Path.Combine(folder.Path, "config.json");
            File.WriteAllText(configFile, Config().ToJsonString());
            source = ["--config", configFile];
        }
        var (code, stdout, stderr) = SharpTuneCli.Run(LiveBytesAllocator, ["estimate", .. source, "--method", quantized ? "lora" : method, "--dtype", dtype,
            "--seq", "256", "--batch", "4", "--lora-r", "8", "--lora-dropout", "0", "--target-modules", "q_proj,v_proj", "--measure", "--json"]);
        Assert.True(code == 0, $"sharptune estimate --measure failed: {stderr}");
        var result = JsonNode.Parse(stdout)!;
        var training = result["training"]!;
        var predicted = training["peak_training"]!.GetValue<double>();
        var measured = result["measured"]!["peak_training_bytes"]!.GetValue<double>();

        var error = (predicted - measured) / measured;
        output.WriteLine($"{method} {dtype}: estimated {predicted / 1e6:F1} MB (weights {training["weights"]!.GetValue<double>() / 1e6:F1}, " +
                         $"grads {training["gradients"]!.GetValue<double>() / 1e6:F1}, optimizer {training["optimizer_state"]!.GetValue<double>() / 1e6:F1}, " +
                         $"activations {training["activations"]!.GetValue<double>() / 1e6:F1}), measured {measured / 1e6:F1} MB, error {error:P1}");
        Assert.True(Math.Abs(error) < Tolerance,
            $"{method} {dtype}: estimated {predicted / 1e6:F1} MB vs measured {measured / 1e6:F1} MB ({error:P1}, tolerance {Tolerance:P0})");
    }

    [ProcessMemoryTheory]
    [InlineData("nf4")]
    public void MeasuringAQuantizedBaseWithoutWeightsNamesWhatIsMissing(string quantize)
    {
        using var folder = new TempDir();
        var configFile = Path.Combine(folder.Path, "config.json");
        File.WriteAllText(configFile, Config().ToJsonString());
        var (code, stdout, stderr) = SharpTuneCli.Run("estimate", "--config", configFile, "--quantize", quantize, "--measure");
        Assert.Equal(1, code);
        Assert.Contains("--model DIR", stderr);
        Assert.Equal("", stdout);
    }
}
