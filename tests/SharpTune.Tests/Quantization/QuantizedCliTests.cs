using SharpTune.Generation;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Quantization;

/// <summary>QLoRA's flags through the real `sharptune` executable: what reaches the job, and the errors users see.</summary>
public class QuantizedCliTests
{
    [Fact]
    public void EstimateOfABitsandbytesCheckpointAssumesItsStoredFormatAsTrainLoadsIt()
    {
        var stored = Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Quantization", "Fixtures", "bitsandbytes", "nf4_double_quant");
        string Estimate(params string[] arguments)
        {
            var (code, stdout, stderr) = SharpTuneCli.Run(["estimate", "--method", "lora", "--json", .. arguments]);
            Assert.True(code == 0, stderr);
            return stdout;
        }
        // The file's quantization_config: nf4 with double quantization, bfloat16 compute; the same architecture read from
        // config.json alone (--config) is estimated in full precision unless --quantize says otherwise.
        var byDefault = Estimate("--model", stored);
        var config = Path.Combine(stored, "config.json");
        Assert.Equal(Estimate("--config", config, "--quantize", "nf4", "--double-quant", "true", "--dtype", "bf16").Replace(config, stored), byDefault);
        Assert.NotEqual(Estimate("--config", config).Replace(config, stored), byDefault);

        var (code, _, stderr) = SharpTuneCli.Run("estimate", "--model", stored, "--method", "lora", "--quantize", "int8");
        Assert.NotEqual(0, code);
        Assert.Contains("--quantize int8 contradicts", stderr);
        Assert.Contains("quantization_config stores nf4", stderr);
    }

    [SharedAssetFact("models/stories260K")]
    public void TrainOnAnNf4BaseWithBf16ComputeWritesOnlyAnAdapterThatLoadsOnTheF32Base()
    {
        using var dir = new TempDir();
        var run = Path.Combine(dir.Path, "run");
        var settings = dir.File("settings.yaml", "validation_fraction: 0\nsave_every: 1000\nwarmup_steps: 0\nlora_dropout: 0\n");
        var (code, _, stderr) = SharpTuneCli.Run("train", "--config", settings, "--model", TestAssets.Stories260K, "--data", StoryData.Write(dir.Path),
            "--output", run, "--method", "lora", "--max-steps", "2", "--batch-size", "4", "--lr", "0.02",
            "--quantize", "nf4", "--compute-dtype", "bf16", "--checkpointed-layers", "4", "--layers-keeping-mlp-products", "2");
        Assert.True(code == 0, stderr);
        Assert.Contains("base quantized: nf4 + double quantization, compute bfloat16", stderr);   // the flags reached the job
        Assert.Contains("gradient checkpointing on, 4 of 5 layers recomputed, 2 keeping their MLP products", stderr);

        // The run's output is an adapter alone: no base weights, only LoRA matrices, every B moved off its zero start.
        var final = Path.Combine(run, "final");
        Assert.Empty(Directory.GetFiles(final, "model*.safetensors"));
        Assert.All(AdapterAssertions.LoraTrained(final), k => Assert.Matches(@"\.lora_[AB]\.weight$", k));

        // Trained on NF4, it is a plain PEFT adapter: the CLI applies it to the f32 checkpoint as the library does.
        var generated = SharpTuneCli.Run("generate", "--model", TestAssets.Stories260K, "--adapter", final, "--prompt", "Once upon a time",
            "--temperature", "0", "--max-tokens", "8", "--print-ids");
        Assert.True(generated.ExitCode == 0, generated.Stderr);
        using var loaded = LoadedModel.Load(TestAssets.Stories260K, final, ScalarType.Float32);
        Assert.False(SharpTune.Quantization.ModelQuantizer.IsQuantized(loaded.Model));
        var expected = loaded.CreateTextGenerator().Generate(["Once upon a time"], new GenerationOptions { MaxNewTokens = 8, Temperature = 0 })[0].Tokens;
        Assert.Equal(string.Join(' ', expected), generated.Stdout.Trim());
    }

    [Fact]
    public void EstimateAssumesTrainsDefaultsOnAQuantizedBaseEveryLayerButTheLastRecomputedAndBf16Compute()
    {
        using var dir = new TempDir();
        var config = dir.File("config.json", """
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 4096, "hidden_size": 384,
             "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 2,
             "max_position_embeddings": 256, "tie_word_embeddings": false}
            """);
        string Estimate(params string[] extra)
        {
            var (code, stdout, stderr) = SharpTuneCli.Run(["estimate", "--config", config, "--method", "lora", "--quantize", "nf4", "--json", .. extra]);
            Assert.True(code == 0, stderr);
            return stdout;
        }
        var byDefault = Estimate();
        Assert.Equal(Estimate("--checkpointed-layers", "3"), byDefault);
        Assert.NotEqual(Estimate("--gradient-checkpointing", "true"), byDefault);   // asked for: every layer
        // And train's compute dtype: bf16 unless asked otherwise (--compute-dtype's default).
        Assert.Equal(Estimate("--dtype", "bf16"), byDefault);
        Assert.NotEqual(Estimate("--dtype", "f32"), byDefault);
    }

    [SharedAssetFact("models/stories260K")]
    public void AWrongQuantizeValueAndAQuantizedMergeWithoutComputeDtypeAreClearErrors()
    {
        using var dir = new TempDir();
        var (code, _, stderr) = SharpTuneCli.Run("train", "--model", TestAssets.Stories260K, "--data", StoryData.Write(dir.Path),
            "--output", Path.Combine(dir.Path, "run"), "--quantize", "nf5");
        Assert.NotEqual(0, code);
        Assert.Contains("error: --quantize: unknown quantization 'nf5'; use one of nf4, fp4, int8", stderr);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "run")), "a refused run must not leave a run directory");

        (code, _, stderr) = SharpTuneCli.Run("train", "--model", TestAssets.Stories260K, "--data", StoryData.Write(dir.Path),
            "--output", Path.Combine(dir.Path, "run"), "--quantize", "nf4", "--checkpointed-layers", "6");
        Assert.NotEqual(0, code);
        Assert.Contains("error: checkpointed_layers must be between 0 and the model's 5 decoder layers, not 6", stderr);

        var merged = Path.Combine(dir.Path, "merged");
        (code, _, stderr) = SharpTuneCli.Run("merge", "--model", TestAssets.Stories260K, "--adapter", dir.File("adapter/"), "--out", merged,
            "--quantize", "nf4");
        Assert.NotEqual(0, code);
        Assert.Contains("merging into a nf4 base needs --compute-dtype (bf16 or f32)", stderr);
        Assert.False(Directory.Exists(merged));

        (code, _, stderr) = SharpTuneCli.Run("generate", "--model", TestAssets.Stories260K, "--prompt", "Once", "--compute-dtype", "bf16");
        Assert.NotEqual(0, code);
        Assert.Contains("--compute-dtype, --double-quant and --quantize-lm-head apply to a quantized base: add --quantize nf4|fp4|int8", stderr);

        (code, _, stderr) = SharpTuneCli.Run("generate", "--model", TestAssets.Stories260K, "--prompt", "Once", "--quantize-lm-head");
        Assert.NotEqual(0, code);
        Assert.Contains("--quantize-lm-head apply to a quantized base: add --quantize", stderr);
        (code, _, stderr) = SharpTuneCli.Run("generate", "--model", TestAssets.Stories260K, "--prompt", "Once", "--max-tokens", "4",
            "--quantize", "int8", "--quantize-lm-head");
        Assert.True(code == 0, stderr);
    }
}
