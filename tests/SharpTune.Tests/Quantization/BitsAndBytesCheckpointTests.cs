using System.Security.Cryptography;
using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Tests.Peft;
using SharpTune.Tests.Support;
using SharpTune.Tests.Serving;
using static TorchSharp.torch;

namespace SharpTune.Tests.Quantization;

/// <summary>
/// Checkpoints in the layout transformers + bitsandbytes save (Fixtures/bitsandbytes). They were made by a line-by-line
/// port of bitsandbytes 0.50.2.dev0's reference code (commit 95f9af30: backends/default/ops.py quantize_4bit,
/// quantize_blockwise, int8_vectorwise_quant; functional.py create_dynamic_map, QuantState.as_dict(packed=True);
/// Linear8bitLt._save_to_state_dict) run under PyTorch 1.13 from a random bf16 tiny Llama (base/): nf4 + double
/// quantization (compute bfloat16), fp4 without (compute float32), int8. EXPECTED.json holds, per checkpoint, the SHA-256
/// of each linear weight as bitsandbytes' dequantize_4bit / int8_vectorwise_dequant gives it (in the quant_state dtype,
/// then as fp32 bytes) and the last-position fp32 logits of transformers' Llama forward (eager attention) over those
/// weights, computed in the same script.
/// </summary>
public class BitsAndBytesCheckpointTests
{
    private static string Fixture(string name) =>
        Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Quantization", "Fixtures", "bitsandbytes", name);

    private static JsonObject Expected => JsonNode.Parse(File.ReadAllText(Fixture("EXPECTED.json")))!.AsObject();

    [Theory]
    [InlineData("nf4_double_quant", QuantizationType.Nf4, true, ScalarType.BFloat16)]
    [InlineData("fp4", QuantizationType.Fp4, false, ScalarType.Float32)]
    [InlineData("int8", QuantizationType.Int8, false, ScalarType.BFloat16)]   // int8: the checkpoint's torch_dtype
    public void LoadsStoredLayersWithTheCheckpointsSettings(string name, QuantizationType type, bool doubleQuant, ScalarType compute)
    {
        using var model = PretrainedModel.Load(Fixture(name));
        var layers = ModelQuantizer.QuantizedLayers(model);
        Assert.Equal(14, layers.Count);   // 7 projections × 2 layers; lm_head stays as transformers keeps it
        Assert.DoesNotContain(layers, l => l.Path.Contains("lm_head"));
        foreach (var (_, layer) in layers)
        {
            Assert.Equal(type, layer.Weight.Type);
            Assert.Equal(compute, layer.ComputeDtype);
            if (layer.Weight is FourBitWeight w) Assert.Equal(doubleQuant, w.DoubleQuantized is not null);
        }
    }

    [Theory]
    [InlineData("nf4_double_quant")]
    [InlineData("fp4")]
    [InlineData("int8")]
    public void DequantizedWeightsAreBitIdenticalToBitsandbytes(string name)
    {
        var hashes = Expected["models"]![name]!["dequantized_fp32_sha256"]!.AsObject();
        using var model = PretrainedModel.Load(Fixture(name));
        var layers = ModelQuantizer.QuantizedLayers(model).ToDictionary(l => l.Path + ".weight", l => l.Layer);
        Assert.Equal(hashes.Count, layers.Count);
        foreach (var (tensorName, hash) in hashes)
        {
            using var weight = layers[tensorName].DequantizedWeight(ScalarType.Float32).contiguous();
            var bytes = weight.data<float>().ToArray().SelectMany(BitConverter.GetBytes).ToArray();
            Assert.True(hash!.GetValue<string>() == Convert.ToHexStringLower(SHA256.HashData(bytes)), $"{name}: {tensorName} differs from bitsandbytes' dequantization");
        }
    }

    [Theory]
    [InlineData("base", null)]
    [InlineData("nf4_double_quant", QuantizationType.Nf4)]
    [InlineData("fp4", QuantizationType.Fp4)]
    [InlineData("int8", QuantizationType.Int8)]
    public void LastPositionLogitsMatchTheReferenceForward(string name, QuantizationType? type)
    {
        // An explicit f32 compute dtype (the caller's wins over bnb_4bit_compute_dtype), so the comparison is fp32.
        var options = type is { } t ? new QuantizationOptions(t, ScalarType.Float32) : null;
        using var model = PretrainedModel.Load(Fixture(name), ScalarType.Float32, quantization: options);
        if (options is not null) Assert.All(ModelQuantizer.QuantizedLayers(model), l => Assert.Equal(ScalarType.Float32, l.Layer.ComputeDtype));
        var prompt = Expected["prompt"]!.AsArray().Select(n => (long)n!.GetValue<int>()).ToArray();
        var reference = Expected["models"]![name]!["last_logits"]!.AsArray().Select(n => n!.GetValue<float>()).ToArray();
        using var noGrad = no_grad();
        using var ids = tensor(prompt).unsqueeze(0);
        using var logits = model.Forward(ids);
        using var last = logits[0, -1];
        using var expected = tensor(reference);
        var worst = (last - expected).abs().max().item<float>();
        Assert.True(worst <= 1e-4, $"{name}: last-position logits differ by up to {worst}");
    }

    [Fact]
    public void AnAdapterTrainedOnTheQuantizedBaseLoadsOnTheFullPrecisionBase()
    {
        using var dir = new TempDir();
        using (var quantized = PretrainedModel.Load(Fixture("nf4_double_quant")))
        {
            var adapter = new LoraAdapter(new LoraConfig { TargetModules = TargetModules.AllLinear });
            adapter.Inject(quantized);
            PeftMethodChecks.Perturb(adapter);
            PeftAdapters.Save(adapter, dir.Path, "unsloth/tiny-bnb-4bit");
        }
        using var fullPrecision = PretrainedModel.Load(Fixture("base"), ScalarType.Float32);
        var loaded = PeftAdapters.Load(fullPrecision, dir.Path);
        Assert.Equal("LORA", loaded.PeftType);
        Assert.Equal(14, fullPrecision.modules().Count(m => m.GetType().Name.StartsWith("Lora", StringComparison.Ordinal)));
    }

    [Fact]
    public void AContradictingQuantizeFlagNamesTheConfigField()
    {
        var error = Assert.Throws<ArgumentException>(() =>
            PretrainedModel.Load(Fixture("nf4_double_quant"), quantization: new QuantizationOptions(QuantizationType.Fp4)));
        Assert.Contains("quantization_config.bnb_4bit_quant_type is 'nf4'", error.Message);
        error = Assert.Throws<ArgumentException>(() =>
            PretrainedModel.Load(Fixture("int8"), quantization: new QuantizationOptions(QuantizationType.Nf4)));
        Assert.Contains("quantization_config.load_in_8bit", error.Message);
    }

    [Theory]
    [InlineData("bnb_4bit_quant_storage", "\"bfloat16\"", "bnb_4bit_quant_storage")]
    [InlineData("quant_method", "\"gptq\"", "quant_method")]
    [InlineData("bnb_4bit_quant_type", "\"int4\"", "bnb_4bit_quant_type")]
    [InlineData("bnb_4bit_quant_type", "\"fp4\"", "field 'quant_type' is 'nf4'")]   // the file's quant_state disagrees
    [InlineData("bnb_4bit_use_double_quant", "false", "bnb_4bit_use_double_quant")]
    [InlineData("load_in_8bit", "true", "load_in_8bit")]
    public void UnsupportedOrInconsistentConfigIsRefusedNamingTheField(string field, string value, string named)
    {
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(Fixture("nf4_double_quant"))) File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        var configPath = Path.Combine(dir.Path, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["quantization_config"]![field] = JsonNode.Parse(value);
        File.WriteAllText(configPath, config.ToJsonString());
        var error = Assert.ThrowsAny<Exception>(() => PretrainedModel.Load(dir.Path));
        Assert.Contains(named, error.Message);
    }

    [Fact]
    public void AnInt8WeightFormatOtherThanRowsIsRefused()
    {
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(Fixture("int8"))) File.Copy(file, Path.Combine(dir.Path, Path.GetFileName(file)));
        var path = Path.Combine(dir.Path, "model.safetensors");
        var bytes = File.ReadAllBytes(path);
        // weight_format is a one-byte uint8 scalar: find layer 0's q_proj entry in the header and set its byte to 1 (col32).
        var headerLength = (int)BitConverter.ToUInt64(bytes, 0);
        var header = JsonNode.Parse(System.Text.Encoding.UTF8.GetString(bytes, 8, headerLength))!.AsObject();
        var offset = header["model.layers.0.self_attn.q_proj.weight_format"]!["data_offsets"]![0]!.GetValue<long>();
        bytes[8 + headerLength + offset] = 1;
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<NotSupportedException>(() => PretrainedModel.Load(dir.Path));
        Assert.Contains("model.layers.0.self_attn.q_proj.weight_format", error.Message);
    }

    [Fact]
    public void SavingTheDequantizedModelDropsTheQuantizationConfig()
    {
        using var dir = new TempDir();
        using var model = PretrainedModel.Load(Fixture("fp4"));
        ModelQuantizer.Dequantize(model);
        PretrainedModel.Save(model, dir.Path);
        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "config.json")))!.AsObject();
        Assert.False(saved.ContainsKey("quantization_config"));
        using var reloaded = PretrainedModel.Load(dir.Path);
        Assert.False(ModelQuantizer.IsQuantized(reloaded));
    }
}

public class BitsAndBytesCheckpointCliTests
{
    [Fact]
    public void MergeIntoABitsandbytesBaseDequantizesToFloat32AndSaysSo()
    {
        using var dir = new TempDir();
        var baseDir = Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Quantization", "Fixtures", "bitsandbytes", "nf4_double_quant");
        using (var quantized = PretrainedModel.Load(baseDir))
        {
            var adapter = new LoraAdapter(new LoraConfig());
            adapter.Inject(quantized);
            PeftMethodChecks.Perturb(adapter);
            PeftAdapters.Save(adapter, dir.File("adapter"), baseDir);
        }
        var merged = dir.File("merged");
        var (code, _, stderr) = SharpTuneCli.Run("merge", "--model", baseDir, "--adapter", dir.File("adapter"), "--out", merged);
        Assert.True(code == 0, stderr);
        Assert.Contains("bitsandbytes nf4 checkpoint: merged into its weights dequantized to float32", stderr);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(merged, "config.json")))!.AsObject();
        Assert.False(config.ContainsKey("quantization_config"));
        Assert.Equal("bfloat16", config["torch_dtype"]!.GetValue<string>());
        using var reloaded = PretrainedModel.Load(merged);
        Assert.False(ModelQuantizer.IsQuantized(reloaded));
    }
}
