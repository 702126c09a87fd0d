using SharpTune.Models;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// TorchSharp keeps an uninitialised copy of every output of a custom autograd function until the node dies; ours free
/// it right after the function is recorded (<see cref="CustomFunctionOutputs"/>). These tests fail when a function
/// stops doing so, or when a TorchSharp upgrade renames the internals the release reaches.
/// </summary>
public class CustomFunctionOutputsTests
{
    private static TrainingBatch Batch()
    {
        var examples = Enumerable.Range(0, 2).Select(i =>
        {
            var ids = Enumerable.Range(0, 24).Select(j => 3 + (i * 11 + j * 5) % 90).ToArray();
            return new TokenizedExample(ids, ids.Select((_, k) => k > 2).ToArray());
        }).ToArray();
        return BatchCollator.Pad(examples, CPU);
    }

    [Fact]
    public void EachCheckpointedLayerFreesItsOutputCopyAndTheGradientsAreUnchanged()
    {
        Dictionary<string, Tensor> Gradients(CausalLanguageModel model, LoraAdapter adapter, bool checkpoint)
        {
            model.GradientCheckpointing = checkpoint;
            using var batch = Batch();
            var (loss, _) = CausalLmLoss.Compute(model, batch);
            loss.backward();
            var grads = adapter.TrainableParameters.ToDictionary(t => t.Name, t => t.Parameter.grad!.clone());
            foreach (var (_, p) in adapter.TrainableParameters) p.grad = null;
            return grads;
        }
        using var model = TestModels.Create("llama");
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = SharpTune.Peft.TargetModules.AllLinear });
        adapter.Inject(model);
        using (no_grad())
            foreach (var (name, p) in adapter.TrainableParameters)
                if (name.Contains("lora_B")) p.copy_(randn_like(p) * 0.1);
        model.train();
        var layers = model.Config.NumLayers;
        Assert.True(layers >= 2);

        var before = CustomFunctionOutputs.ReleasedOnThisThread;
        var plain = Gradients(model, adapter, checkpoint: false);
        Assert.Equal(before, CustomFunctionOutputs.ReleasedOnThisThread);   // no custom function in a plain LoRA step
        var checkpointed = Gradients(model, adapter, checkpoint: true);
        // One copy per recomputed layer, freed in the forward; the recomputation runs plain autograd (LoRA wraps every
        // linear layer, so no frozen projection is left out).
        Assert.Equal(before + layers, CustomFunctionOutputs.ReleasedOnThisThread);
        foreach (var (name, grad) in plain)
            Assert.True(grad.allclose(checkpointed[name], rtol: 1e-4, atol: 1e-6), $"{name}: gradient differs with checkpointing");
    }

    [Fact]
    public void QuantizedMatmulsFreeTheirOutputCopies()
    {
        using var model = TestModels.Create("llama");
        ModelQuantizer.Quantize(model, QuantizationOptions.Parse("nf4", "f32"));
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = SharpTune.Peft.TargetModules.Names("q_proj", "v_proj") });
        adapter.Inject(model);
        model.train();
        var quantizedLayers = ModelQuantizer.QuantizedLayers(model).Count;

        var before = CustomFunctionOutputs.ReleasedOnThisThread;
        using var batch = Batch();
        var (loss, _) = CausalLmLoss.Compute(model, batch);
        // Every quantized layer whose input takes gradients ran QuantizedMatmul: all but the first layer's q/k/v, whose
        // input (the frozen embeddings, normed) does not.
        Assert.Equal(quantizedLayers - 3, CustomFunctionOutputs.ReleasedOnThisThread - before);
        loss.backward();   // the stand-ins left in the nodes do not disturb the backward
        Assert.All(adapter.TrainableParameters.Where(t => t.Name.Contains("lora_B")),
            t => Assert.True(t.Parameter.grad!.abs().sum().item<float>() > 0, $"{t.Name}: no gradient"));
    }
}
