using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Quantization;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Tests.Quantization;

public class QuantizedLinearTests
{
    [Theory]
    [InlineData(QuantizationType.Nf4, ScalarType.Float32)]
    [InlineData(QuantizationType.Fp4, ScalarType.Float32)]
    [InlineData(QuantizationType.Int8, ScalarType.Float32)]
    [InlineData(QuantizationType.Nf4, ScalarType.BFloat16)]
    public void OutputAndInputGradientEqualThoseOfTheDequantizedWeight(QuantizationType type, ScalarType compute)
    {
        torch.manual_seed(5);
        using var w = randn(24, 128) * 0.1;
        using var b = randn(24) * 0.1;
        using var layer = QuantizedLinear.Quantize(w, b, new QuantizationOptions(type, compute));
        using var deq = layer.DequantizedWeight(ScalarType.Float32);

        using var x = randn(2, 3, 128).requires_grad_(true);
        var y = layer.forward(x);
        Assert.Equal(ScalarType.Float32, y.dtype);                       // cast back to the input's dtype
        using var x2 = x.detach().clone().requires_grad_(true);
        var reference = F.linear(x2.to(compute), deq.to(compute), b.to(compute)).to(ScalarType.Float32);
        var tolerance = compute == ScalarType.Float32 ? 1e-5 : 2e-2;
        Assert.True(y.allclose(reference, rtol: tolerance, atol: tolerance), $"max diff {(y - reference).abs().max().item<float>()}");

        using var upstream = randn(2, 3, 24);
        (y * upstream).sum().backward();
        (reference * upstream).sum().backward();
        Assert.True(x.grad!.allclose(x2.grad!, rtol: tolerance, atol: tolerance));
    }

    [Theory]
    [InlineData("qwen2")]     // q/k/v biases
    [InlineData("qwen3")]
    [InlineData("gemma3")]
    [InlineData("phi3")]      // fused qkv_proj and gate_up_proj
    [InlineData("smollm3")]
    [InlineData("granite")]
    [InlineData("olmo2")]
    [InlineData("gemma")]
    public void QuantizedLoadEqualsQuantizingTheLoadedModelAndReportsItsSize(string kind)
    {
        using var dir = new TempDir();
        using (var source = TestModels.Create(kind)) PretrainedModel.Save(source, dir.Path);
        var options = new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32);
        using var loaded = PretrainedModel.Load(dir.Path, quantization: options);
        using var reference = PretrainedModel.Load(dir.Path, ScalarType.Float32);
        var perLayer = kind == "phi3" ? 4 : 7;   // q, k, v, o, gate, up, down — or Phi-3's fused qkv_proj, o, gate_up_proj, down
        Assert.Equal(perLayer * reference.Config.NumLayers, ModelQuantizer.Targets(reference).Count);
        ModelQuantizer.Quantize(reference, options);
        Assert.Equal(perLayer * reference.Config.NumLayers, ModelQuantizer.QuantizedLayers(loaded).Count);
        Assert.DoesNotContain(ModelQuantizer.QuantizedLayers(loaded), l => l.Path.Contains("lm_head"));
        using var ids = tensor(new long[,] { { 1, 5, 9, 33, 7 } });
        using var noGrad = no_grad();
        Assert.True(loaded.Forward(ids).equal(reference.Forward(ids)).all().item<bool>());

        var measured = QuantizationReport.Of(loaded);
        Assert.Equal(measured, QuantizationReport.Estimate(dir.Path, options));
        Assert.InRange(measured.BitsPerQuantizedWeight, 4.12, 4.2);   // 4 + 8/64 + 32/(64·256) = 4.127
    }

    [Theory]
    [InlineData("llama", QuantizationType.Int8)]
    [InlineData("qwen3", QuantizationType.Nf4)]
    public void AnUntiedOutputHeadIsQuantizedWhenAskedAndATiedOneNever(string kind, QuantizationType type)
    {
        using var dir = new TempDir();
        using (var source = TestModels.Create(kind)) PretrainedModel.Save(source, dir.Path);
        var options = new QuantizationOptions(type, ScalarType.Float32, LmHead: true);
        using var loaded = PretrainedModel.Load(dir.Path, quantization: options);
        using var reference = PretrainedModel.Load(dir.Path, ScalarType.Float32);
        var decoderLayers = ModelQuantizer.Targets(reference).Count;
        Assert.Equal(decoderLayers + 1, ModelQuantizer.Targets(reference, includeHead: true).Count);
        ModelQuantizer.Quantize(reference, options);
        Assert.Contains(ModelQuantizer.QuantizedLayers(loaded), l => l.Path == "lm_head");
        Assert.Equal(decoderLayers + 1, ModelQuantizer.QuantizedLayers(loaded).Count);
        Assert.False(loaded.HeadIsTrainable);
        using var ids = tensor(new long[,] { { 1, 5, 9, 33, 7 } });
        using (no_grad()) Assert.True(loaded.Forward(ids).equal(reference.Forward(ids)).all().item<bool>());
        Assert.Equal(QuantizationReport.Of(loaded), QuantizationReport.Estimate(dir.Path, options));

        using var tiedDir = new TempDir();
        using (var source = TestModels.Create("llama-tied")) PretrainedModel.Save(source, tiedDir.Path);
        using var tied = PretrainedModel.Load(tiedDir.Path, quantization: options);
        Assert.DoesNotContain(ModelQuantizer.QuantizedLayers(tied), l => l.Path.Contains("lm_head"));
        using (no_grad()) Assert.True(tied.Forward(ids).isfinite().all().item<bool>());   // the head is the embedding, unquantized
    }

    [Fact]
    public void QuantizedModelIsCloseToTheFullPrecisionOneAndSavesInBitsandbytesLayout()
    {
        using var dir = new TempDir();
        using (var source = TestModels.Create("gpt2")) PretrainedModel.Save(source, dir.Path);   // Conv1D layers
        using var full = PretrainedModel.Load(dir.Path, ScalarType.Float32);
        using var int8 = PretrainedModel.Load(dir.Path, quantization: new QuantizationOptions(QuantizationType.Int8, ScalarType.Float32));
        Assert.Equal(8, ModelQuantizer.QuantizedLayers(int8).Count);       // c_attn, c_proj, c_fc, mlp.c_proj × 2
        using var ids = tensor(new long[,] { { 1, 5, 9, 33, 7 } });
        using (no_grad())
        {
            using var a = full.Forward(ids);
            using var b = int8.Forward(ids);
            var relative = ((a - b).norm() / a.norm()).item<float>();
            Assert.InRange(relative, 1e-6, 0.02);
        }
        // Saved as transformers + bitsandbytes save it (Conv1D weights as (out, in) int8 + SCB), it reloads unchanged.
        PretrainedModel.Save(int8, Path.Combine(dir.Path, "out"));
        Assert.NotNull(BitsAndBytesConfig.TryRead(Path.Combine(dir.Path, "out")));
        using var reloaded = PretrainedModel.Load(Path.Combine(dir.Path, "out"), quantization: new QuantizationOptions(QuantizationType.Int8, ScalarType.Float32));
        Assert.Equal(8, ModelQuantizer.QuantizedLayers(reloaded).Count);
        using (no_grad())
        {
            using var before = int8.Forward(ids);
            using var after = reloaded.Forward(ids);
            Assert.True(before.equal(after).all().item<bool>(), "the reloaded int8 model computes other logits");
        }
    }
}
