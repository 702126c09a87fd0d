using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Tests.Support;
using SharpTune.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

// LoftQ as PEFT applies it to a quantized base: huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40,
// src/peft/utils/loftq_utils.py (replace_lora_weights_loftq, _loftq_init_new, _low_rank_decomposition) and
// examples/loftq_finetuning/quantize_save_load.py (the adapter is saved with init_lora_weights true).
public sealed class LoraLoftqTests : IDisposable
{
    private readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    private static readonly QuantizationOptions Nf4 = new(QuantizationType.Nf4, ScalarType.Float32);

    private string SavedModel(string kind = "llama")
    {
        using var source = TestModels.Create(kind);
        PretrainedModel.Save(source, dir.Path);
        return dir.Path;
    }

    private static Tensor StoredWeight(string modelDir, string path)
    {
        using var checkpoint = HfCheckpoint.Open(modelDir);
        return checkpoint.Read(path + ".weight", ScalarType.Float32);
    }

    [Theory]
    [InlineData("nf4")]
    [InlineData("int8")]
    public void EachQuantizedLayerStartsAtTheBestRankRApproximationOfItsQuantizationError(string type)
    {
        var modelDir = SavedModel();
        using var model = PretrainedModel.Load(modelDir, quantization: new QuantizationOptions(QuantizationOptions.ParseType(type), ScalarType.Float32));
        const int r = 4;
        var adapter = new LoraAdapter(new LoraConfig { R = r, LoraAlpha = r, InitLoraWeights = LoraInit.Loftq });
        adapter.Inject(model);
        Assert.Empty(adapter.Warnings);   // scaling 1
        Assert.NotEmpty(adapter.Layers);
        foreach (var (path, layer) in adapter.Layers)
        {
            using var scope = NewDisposeScope();
            var quantized = (QuantizedLinear)layer.base_layer;
            var residual = StoredWeight(modelDir, path).to(ScalarType.Float64) - quantized.DequantizedWeight(ScalarType.Float32).to(ScalarType.Float64);
            var a = layer.lora_A.weight!.detach().to(ScalarType.Float64);
            var b = layer.lora_B.weight!.detach().to(ScalarType.Float64);
            // Eckart–Young: the best rank-r approximation leaves exactly the other singular values' energy.
            var sigma = torch.linalg.svdvals(residual);
            var left = (residual - b.matmul(a)).square().sum().item<double>();
            var expected = sigma[r..].square().sum().item<double>();
            Assert.True(Math.Abs(left - expected) <= 1e-4 * sigma.square().sum().item<double>(), $"{path}: ‖R − BA‖² {left} against Σσᵢ² beyond r {expected}");
            // PEFT's split U√S, √S·Vh: AAᵀ = BᵀB = diag(σ₁ … σᵣ).
            var top = torch.diag(sigma[..r]);
            Assert.True((a.matmul(a.t()) - top).abs().max().item<double>() < 1e-4 * sigma[0].item<double>(), $"{path}: AAᵀ is not diag(σ)");
            Assert.True((b.t().matmul(b) - top).abs().max().item<double>() < 1e-4 * sigma[0].item<double>(), $"{path}: BᵀB is not diag(σ)");
        }
    }

    [Fact]
    public void WithScalingOneTheAdaptedQuantizedModelIsCloserToTheFullPrecisionOne()
    {
        var modelDir = SavedModel();
        using var full = PretrainedModel.Load(modelDir, ScalarType.Float32);
        using var quantized = PretrainedModel.Load(modelDir, quantization: Nf4);
        using var ids = tensor(new long[,] { { 1, 5, 9, 33, 7, 12, 3 } });
        using var noGrad = no_grad();
        using var reference = full.Forward(ids);
        double Error()
        {
            using var logits = quantized.Forward(ids);
            return ((logits - reference).norm() / reference.norm()).item<float>();
        }
        var plain = Error();
        var adapter = new LoraAdapter(new LoraConfig { R = 8, LoraAlpha = 8, InitLoraWeights = LoraInit.Loftq, TargetModules = TargetModules.AllLinear });
        adapter.Inject(quantized);
        var corrected = Error();
        Assert.True(corrected < plain * 0.8, $"logits' relative error {plain} → {corrected}");

        // Saved as PEFT's LoftQ example saves it: an ordinary adapter (init_lora_weights true), so loading it onto the
        // quantized base runs no LoftQ again and computes the same.
        var saved = Path.Combine(dir.Path, "adapter");
        PeftAdapters.Save(adapter, saved, "m");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(saved, "adapter_config.json")))!;
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());
        Assert.Empty(config["loftq_config"]!.AsObject());
        using var reloaded = PretrainedModel.Load(modelDir, quantization: Nf4);
        PeftAdapters.Load(reloaded, saved);
        using var before = quantized.Forward(ids);
        using var after = reloaded.Forward(ids);
        Assert.True(before.equal(after).all().item<bool>());
    }

    [Fact]
    public void AScalingOtherThanOneIsWarnedAboutAndStartsAtScalingTimesTheError()
    {
        var modelDir = SavedModel();
        using var model = PretrainedModel.Load(modelDir, quantization: Nf4);
        using var unit = PretrainedModel.Load(modelDir, quantization: Nf4);
        var doubled = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, InitLoraWeights = LoraInit.Loftq });
        doubled.Inject(model);
        Assert.Contains("lora_alpha", Assert.Single(doubled.Warnings));
        var plain = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 4, InitLoraWeights = LoraInit.Loftq });
        plain.Inject(unit);
        // PEFT assigns the factors without the scaling: the same A and B, whatever lora_alpha is.
        foreach (var ((_, x), (_, y)) in doubled.Layers.Zip(plain.Layers))
        {
            Assert.True(x.lora_A.weight!.equal(y.lora_A.weight!).all().item<bool>());
            Assert.True(x.lora_B.weight!.equal(y.lora_B.weight!).all().item<bool>());
            Assert.Equal(2 * y.Scaling, x.Scaling, 12);
        }
    }

    [Fact]
    public void WithoutTheFullPrecisionWeightsOrAQuantizedBaseItIsAClearError()
    {
        var modelDir = SavedModel();
        // Quantized in place after loading: the stored weights it came from are not known.
        using var inPlace = PretrainedModel.Load(modelDir, ScalarType.Float32);
        ModelQuantizer.Quantize(inPlace, Nf4);
        var error = Assert.Throws<NotSupportedException>(() =>
            new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 4, InitLoraWeights = LoraInit.Loftq }).Inject(inPlace));
        Assert.Contains("full-precision weights the base was quantized from", error.Message);

        // A full-precision base: layers that are not quantized start as LoRA's default (A random, B zero).
        using var full = PretrainedModel.Load(modelDir, ScalarType.Float32);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 4, InitLoraWeights = LoraInit.Loftq });
        adapter.Inject(full);
        Assert.All(adapter.Layers, l => Assert.Equal(0, l.Layer.lora_B.weight!.abs().max().item<float>()));

        var options = new TrainingOptions
        {
            Model = modelDir, Data = StoryData.Write(dir.Path), Output = Path.Combine(dir.Path, "run"), Method = "lora", InitLoraWeights = "loftq",
        };
        Assert.Contains("needs quantize: nf4, fp4 or int8", Assert.Throws<ArgumentException>(() => FineTuneJob.Run(options)).Message);
        Assert.Equal(LoraInit.Loftq, LoraConfig.ParseInit("loftq", "test"));
    }

    [SharedAssetFact("models/stories260K")]
    public void AQloraRunStartsFromLoftqAndTrains()
    {
        var options = new TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = StoryData.Write(dir.Path), Output = Path.Combine(dir.Path, "run"), Method = "lora",
            MaxSteps = 8, LearningRate = 1e-2, MicroBatchSize = 4, EvalEvery = 8, ValidationFraction = 0.25,
            TargetModules = "all-linear", Quantize = "nf4", ComputeDtype = "f32", InitLoraWeights = "loftq", LoraR = 8, LoraAlpha = 8,
        };
        var result = FineTuneJob.Run(options);
        Assert.True(result.Training.BestValidationLoss < result.InitialValidationLoss,
            $"validation loss {result.InitialValidationLoss} → {result.Training.BestValidationLoss}");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(result.FinalDirectory, "adapter_config.json")))!;
        Assert.True(config["init_lora_weights"]!.GetValue<bool>());
    }
}
