using SharpTune.IO;
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

/// <summary>
/// SharpTune quantizing the fixtures' bf16 base writes what the bitsandbytes port wrote: the same tensors byte for byte,
/// the same quant_state JSON and quantization_config. The port ran on PyTorch 1.13, whose linspace gives 42 of the 256
/// entries of create_dynamic_map() one ulp away from libtorch 2.10's (which SharpTune, like bitsandbytes on a current
/// PyTorch, uses); nested_quant_map is therefore compared to this build's map and the codes/absmax to the port's.
/// </summary>
public class BitsAndBytesCheckpointWriterTests
{
    private static string Fixture(string name) =>
        Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Quantization", "Fixtures", "bitsandbytes", name);

    [Theory]
    [InlineData("nf4_double_quant", QuantizationType.Nf4, true, ScalarType.BFloat16)]
    [InlineData("fp4", QuantizationType.Fp4, false, ScalarType.Float32)]
    [InlineData("int8", QuantizationType.Int8, false, ScalarType.BFloat16)]
    public void QuantizingTheBaseWritesTheReferenceCheckpoint(string name, QuantizationType type, bool doubleQuant, ScalarType compute)
    {
        using var dir = new TempDir();
        var output = Path.Combine(dir.Path, "out");
        ModelQuantizer.SaveQuantized(Fixture("base"), output, new QuantizationOptions(type, compute, doubleQuant));
        using var ours = SharpTune.IO.SafetensorsFile.Open(Path.Combine(output, "model.safetensors"));
        using var reference = SharpTune.IO.SafetensorsFile.Open(Path.Combine(Fixture(name), "model.safetensors"));
        Assert.Equal(reference.Tensors.Keys.Order(), ours.Tensors.Keys.Order());
        foreach (var key in reference.Tensors.Keys)
        {
            Assert.True(reference.Tensors[key].DType == ours.Tensors[key].DType, $"{key}: dtype");
            Assert.Equal(reference.Tensors[key].Shape, ours.Tensors[key].Shape);
            using var a = reference.Read(key);
            using var b = ours.Read(key);
            if (key.EndsWith(".nested_quant_map", StringComparison.Ordinal))
            {
                Assert.Equal(DoubleQuantizedAbsmax.DynamicMap, b.data<float>().ToArray());
                continue;
            }
            Assert.True(Bytes(a).SequenceEqual(Bytes(b)), $"{name}: {key} differs from bitsandbytes'");
        }
        var expectedConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture(name), "config.json")))!["quantization_config"]!;
        var writtenConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!["quantization_config"]!;
        Assert.True(JsonNode.DeepEquals(expectedConfig, writtenConfig), writtenConfig.ToJsonString());
        using var reloaded = PretrainedModel.Load(output);
        Assert.Equal(14, ModelQuantizer.QuantizedLayers(reloaded).Count);
    }

    private static byte[] Bytes(Tensor t)
    {
        using var bytes = t.contiguous().view(-1);
        return t.dtype switch
        {
            ScalarType.Byte => bytes.data<byte>().ToArray(),
            ScalarType.Int8 => bytes.data<sbyte>().ToArray().Select(v => (byte)v).ToArray(),
            ScalarType.Float32 => bytes.data<float>().ToArray().SelectMany(BitConverter.GetBytes).ToArray(),
            _ => bytes.to(ScalarType.Float32).data<float>().ToArray().SelectMany(BitConverter.GetBytes).ToArray(),
        };
    }

    [Theory]
    [InlineData(0.4541015625, "0.4541015625")]
    [InlineData(0.1f, "0.10000000149011612")]
    [InlineData(2.0, "2.0")]
    [InlineData(1e-5, "1e-05")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(1.5e-7, "1.5e-07")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(-123.25, "-123.25")]
    public void OffsetsAreWrittenAsPythonsFloatRepr(double value, string python)
    {
        // repr(float) in CPython 3.11 for each value.
        Assert.Equal(python, PythonJson.FloatRepr(value));
    }
}

public class BitsAndBytesQuantizeCliTests
{
    [Fact]
    public void QuantizeWritesABitsandbytesFolderWithItsCompanions()
    {
        using var dir = new TempDir();
        var baseDir = Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Quantization", "Fixtures", "bitsandbytes", "base");
        var output = dir.File("nf4");
        var (code, stdout, stderr) = SharpTuneCli.Run("quantize", "--model", baseDir, "--out", output, "--quantize", "nf4", "--compute-dtype", "bf16");
        Assert.True(code == 0, stderr);
        Assert.Equal(output, stdout.Trim());
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "config.json")))!["quantization_config"]!;
        Assert.Equal("nf4", config["bnb_4bit_quant_type"]!.GetValue<string>());
        Assert.True(config["bnb_4bit_use_double_quant"]!.GetValue<bool>());
        Assert.False(Directory.Exists(output + ".incomplete"));

        (code, _, stderr) = SharpTuneCli.Run("quantize", "--model", output, "--out", dir.File("again"), "--quantize", "nf4");
        Assert.NotEqual(0, code);
        Assert.Contains("already a bitsandbytes checkpoint", stderr);
        (code, _, stderr) = SharpTuneCli.Run("quantize", "--model", baseDir, "--out", dir.File("none"));
        Assert.NotEqual(0, code);
        Assert.Contains("--quantize is required", stderr);
        (code, _, stderr) = SharpTuneCli.Run("info", "--model", output, "--quantize", "int8");
        Assert.NotEqual(0, code);
        Assert.Contains("quantization_config.bnb_4bit_quant_type is 'nf4'", stderr);
    }
}

public class BitsAndBytesInfoCliTests
{
    [Fact]
    public void InfoDescribesTheStoredQuantizationAndCountsWeightsNotBytes()
    {
        var dir = Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Quantization", "Fixtures", "bitsandbytes");
        var (code, stdout, stderr) = SharpTuneCli.Run("info", "--model", Path.Combine(dir, "nf4_double_quant"), "--json");
        Assert.True(code == 0, stderr);
        var info = JsonNode.Parse(stdout)!;
        (code, var baseOut, stderr) = SharpTuneCli.Run("info", "--model", Path.Combine(dir, "base"), "--json");
        Assert.True(code == 0, stderr);
        Assert.Equal(JsonNode.Parse(baseOut)!["parameters"]!.GetValue<long>(), info["parameters"]!.GetValue<long>());
        Assert.Equal("bitsandbytes", info["quantized"]!["stored"]!.GetValue<string>());
        Assert.StartsWith("nf4 + double quantization", info["quantized"]!["format"]!.GetValue<string>());
    }
}

/// <summary>QLoRA on a bitsandbytes checkpoint written by <c>ModelQuantizer.SaveQuantized</c> from stories260K, as on a Hub download.</summary>
public class BitsAndBytesTrainingTests
{
    [SharedAssetFact("models/stories260K")]
    public void LoraTrainsOnAStoredNf4BaseAndTheAdapterLoadsOnTheFullPrecisionBase()
    {
        using var dir = new TempDir();
        var bnbDir = Path.Combine(dir.Path, "stories260K-bnb-4bit");
        ModelQuantizer.SaveQuantized(TestAssets.Stories260K, bnbDir, new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32));
        var options = new SharpTune.Training.TrainingOptions
        {
            Model = bnbDir, Data = StoryData.Write(dir.Path), Output = Path.Combine(dir.Path, "run"), Method = "lora",
            MaxSteps = 12, LearningRate = 1e-2, MicroBatchSize = 4, EvalEvery = 6, SaveEvery = 6, ValidationFraction = 0.25,
            TargetModules = "all-linear",
        };
        Assert.Contains("method 'full'", Assert.Throws<ArgumentException>(() => SharpTune.Training.FineTuneJob.Run(options with { Method = "full" })).Message);
        var result = SharpTune.Training.FineTuneJob.Run(options);
        Assert.True(result.Training.BestValidationLoss < result.InitialValidationLoss * 0.8,
            $"validation loss {result.InitialValidationLoss} → {result.Training.BestValidationLoss}");
        using var onF32 = SharpTune.Generation.LoadedModel.Load(TestAssets.Stories260K, result.FinalDirectory, ScalarType.Float32);
        Assert.False(ModelQuantizer.IsQuantized(onF32.Model));
        using var onBnb = SharpTune.Generation.LoadedModel.Load(bnbDir, result.FinalDirectory);
        Assert.True(ModelQuantizer.IsQuantized(onBnb.Model));
        Assert.All(ModelQuantizer.QuantizedLayers(onBnb.Model), l => Assert.Equal(ScalarType.Float32, l.Layer.ComputeDtype));   // bnb_4bit_compute_dtype
    }
}

public class BitsAndBytesGgufExportTests
{
    [SharedAssetFact("models/stories260K")]
    public void ExportingABitsandbytesCheckpointWritesItsDequantizedWeights()
    {
        using var dir = new TempDir();
        var bnbDir = Path.Combine(dir.Path, "bnb");
        ModelQuantizer.SaveQuantized(TestAssets.Stories260K, bnbDir, new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32));
        // The same weights written in full precision: load quantized, dequantize, save.
        var plainDir = Path.Combine(dir.Path, "plain");
        using (var model = PretrainedModel.Load(bnbDir, ScalarType.Float32))
        {
            ModelQuantizer.Dequantize(model);
            PretrainedModel.Save(model, plainDir);
            PretrainedModel.CopyCompanionFiles(bnbDir, plainDir);
        }
        var fromBnb = SharpTune.Export.Gguf.GgufExporter.Export(new SharpTune.Export.Gguf.GgufExportOptions
        {
            ModelDir = bnbDir, OutputPath = Path.Combine(dir.Path, "a.gguf"), Type = SharpTune.Export.Gguf.GgufExportType.F32, Name = "m",
        });
        SharpTune.Export.Gguf.GgufExporter.Export(new SharpTune.Export.Gguf.GgufExportOptions
        {
            ModelDir = plainDir, OutputPath = Path.Combine(dir.Path, "b.gguf"), Type = SharpTune.Export.Gguf.GgufExportType.F32, Name = "m",
        });
        Assert.Contains(fromBnb.Warnings, w => w.Contains("bitsandbytes nf4"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir.Path, "b.gguf")), File.ReadAllBytes(Path.Combine(dir.Path, "a.gguf")));
    }
}

/// <summary>
/// SharpTune's codecs against the bitsandbytes port (same script and version as the checkpoints) on adversarial blocks:
/// values exactly on code midpoints and one ulp either side (absmax 1, 3, 0.7, 1e-3), all-zero and −0 blocks,
/// denormals, values near the fp32 maximum, heavy tails, bf16/f16 inputs, a partial last block and an odd count;
/// LLM.int8 rows with w·127/s exactly halfway between integers and an all-zero row; a double quantization of 300 absmax.
/// </summary>
public class BitsAndBytesCodecAgreementTests
{
    private static readonly string File = Path.Combine(TestAssets.RepoRoot, "tests", "SharpTune.Tests", "Quantization", "Fixtures",
        "bitsandbytes", "adversarial_blocks.safetensors");

    [Fact]
    public void CodesAndStatisticsEqualBitsandbytesOnAdversarialBlocks()
    {
        using var f = SharpTune.IO.SafetensorsFile.Open(File);
        var cases = 0;
        foreach (var key in f.Tensors.Keys.Where(k => k.EndsWith(".input", StringComparison.Ordinal)))
        {
            var name = key[..^".input".Length];
            using var scope = NewDisposeScope();
            var input = f.Read(key);
            if (name.StartsWith("int8.", StringComparison.Ordinal))
            {
                using var w = Int8RowwiseCodec.Quantize(input);
                Assert.True(w.Codes.equal(f.Read(name + ".codes")).all().item<bool>(), $"{name}: int8 codes");
                Assert.True(w.RowAbsmax.equal(f.Read(name + ".scb")).all().item<bool>(), $"{name}: SCB");
            }
            else if (name == "dq")
            {
                using var dq = DoubleQuantizedAbsmax.Quantize(input);
                Assert.True(dq.Codes.equal(f.Read("dq.codes")).all().item<bool>(), "double quantization codes");
                Assert.True(dq.Absmax.equal(f.Read("dq.nested_absmax")).all().item<bool>(), "nested absmax");
                Assert.Equal(f.Read("dq.offset")[0].item<float>(), dq.Offset.item<float>());
            }
            else
            {
                var codec = FourBitCodec.For(name.StartsWith("nf4", StringComparison.Ordinal) ? QuantizationType.Nf4 : QuantizationType.Fp4);
                using var w = codec.Quantize(input, doubleQuant: false);
                Assert.True(w.Packed.equal(f.Read(name + ".packed")).all().item<bool>(), $"{name}: packed codes");
                Assert.True(w.Absmax!.equal(f.Read(name + ".absmax")).all().item<bool>(), $"{name}: absmax");
            }
            cases++;
        }
        Assert.Equal(21, cases);
    }
}
