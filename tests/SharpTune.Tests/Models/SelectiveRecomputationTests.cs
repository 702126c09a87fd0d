using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Adapters;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// A checkpointed layer's recomputation leaves out what the backward never reads (the frozen down-projection's
/// product): the gradients must still equal those of a step that keeps every activation.
/// </summary>
public class SelectiveRecomputationTests
{
    private static readonly TokenizedExample[] Examples = Enumerable.Range(0, 3).Select(i =>
    {
        var ids = Enumerable.Range(0, 24).Select(j => 3 + (i * 13 + j * 7) % 90).ToArray();
        return new TokenizedExample(ids, ids.Select((_, k) => k > 2).ToArray());
    }).ToArray();

    private sealed record Step(float Loss, Dictionary<string, Tensor> Gradients, long SkippedProducts);

    /// <summary>One loss and backward on a tiny model with <paramref name="adapter"/> injected, checkpointing as asked.</summary>
    private static Step Run(string kind, string? quantize, ScalarType compute, Func<IPeftAdapter> adapter, bool checkpointing,
        int? checkpointedLayers, int keepingLayers = 0)
    {
        using var model = TestModels.Create(kind, dtype: quantize is null ? compute : ScalarType.Float32);
        if (quantize is not null) ModelQuantizer.Quantize(model, QuantizationOptions.Parse(quantize, compute == ScalarType.BFloat16 ? "bf16" : "f32"));
        var peft = adapter();
        peft.Inject(model);
        manual_seed(5);
        using (no_grad())
            foreach (var (name, p) in peft.TrainableParameters)
                if (name.Contains("lora_B") || name.Contains("adapter_up")) p.copy_(randn_like(p) * 0.1);
        model.train();
        model.GradientCheckpointing = checkpointing;
        model.CheckpointedLayers = checkpointedLayers;
        model.LayersKeepingMlpProducts = keepingLayers;
        manual_seed(99);   // the same dropout masks in both runs
        using var batch = BatchCollator.Pad(Examples, CPU);
        var before = FrozenProjection.SkippedOnThisThread;
        var (loss, _) = CausalLmLoss.Compute(model, batch);
        loss.backward();
        return new Step(loss.item<float>(), peft.TrainableParameters.ToDictionary(t => t.Name, t => t.Parameter.grad!.clone()),
            FrozenProjection.SkippedOnThisThread - before);
    }

    private static LoraAdapter AttentionLora() => new(new LoraConfig
    {
        R = 4, LoraAlpha = 8, LoraDropout = 0.2, TargetModules = TargetModules.Names("q_proj", "k_proj", "v_proj", "o_proj"),
    });

    /// <summary>
    /// Every recomputed layer leaves out down_proj's product; a keeping layer also takes its gate and up products from the
    /// forward instead of multiplying again (three products not recomputed).
    /// </summary>
    [Theory]
    [InlineData("llama", null, ScalarType.Float32, null, 0, 2, 1e-5)]      // frozen nn.Linear projections, both layers recomputed
    [InlineData("llama", null, ScalarType.Float32, 1, 0, 1, 1e-5)]         // only the first layer recomputed
    [InlineData("llama", null, ScalarType.Float32, null, 2, 6, 1e-5)]      // both layers keep their gate and up products
    [InlineData("qwen3", "nf4", ScalarType.Float32, null, 0, 2, 1e-5)]     // quantized projections
    [InlineData("qwen3", "nf4", ScalarType.Float32, 1, 2, 3, 1e-5)]        // one layer recomputed, and it keeps
    [InlineData("llama", "nf4", ScalarType.BFloat16, null, 1, 4, 2e-2)]    // the first of the two keeps
    [InlineData("llama", "int8", ScalarType.Float32, null, 2, 6, 1e-5)]
    public void SelectiveRecomputationGivesTheSameGradients(string kind, string? quantize, ScalarType compute,
        int? checkpointedLayers, int keepingLayers, int expectedSkips, double tolerance)
    {
        var plain = Run(kind, quantize, compute, AttentionLora, checkpointing: false, null);
        var recomputed = Run(kind, quantize, compute, AttentionLora, checkpointing: true, checkpointedLayers, keepingLayers);
        Assert.Equal(0, plain.SkippedProducts);
        Assert.Equal(expectedSkips, recomputed.SkippedProducts);   // the path under test ran
        Assert.Equal(plain.Loss, recomputed.Loss, 3);
        AssertSameGradients(plain, recomputed, tolerance);
    }

    /// <summary>
    /// Projections that train or are wrapped (LoRA on every linear; a bottleneck adapter on down_proj, reading its output)
    /// are recomputed in full, and their products are not kept; the gradients still match.
    /// </summary>
    [Theory]
    [InlineData("lora-all-linear")]
    [InlineData("adapter")]
    public void WrappedProjectionsAreRecomputedInFull(string method)
    {
        Func<IPeftAdapter> adapter = method == "adapter"
            ? () => new BottleneckAdapter(new BottleneckConfig())
            : () => new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = TargetModules.AllLinear });
        var plain = Run("llama", null, ScalarType.Float32, adapter, checkpointing: false, null);
        var recomputed = Run("llama", null, ScalarType.Float32, adapter, checkpointing: true, null, keepingLayers: 2);
        Assert.Equal(method == "adapter" ? 4 : 0, recomputed.SkippedProducts);   // a bottleneck adapter wraps down_proj only
        AssertSameGradients(plain, recomputed, 1e-5);
    }

    private static void AssertSameGradients(Step plain, Step recomputed, double tolerance)
    {
        Assert.Contains(plain.Gradients.Values, g => g.abs().max().item<float>() > 0);
        foreach (var (name, grad) in plain.Gradients)
        {
            var other = recomputed.Gradients[name];
            var worst = (grad - other).abs().max().item<float>();
            var scale = grad.abs().max().item<float>();   // float rounding differs with the order of the products
            Assert.True(grad.allclose(other, rtol: tolerance, atol: tolerance * scale), $"{name}: gradient differs by {worst} (largest {scale}) with checkpointing");
        }
    }
}
