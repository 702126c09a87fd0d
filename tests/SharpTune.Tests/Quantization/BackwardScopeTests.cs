using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Quantization;
using SharpTune.Tests.Peft;
using SharpTune.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Quantization;

/// <summary>
/// The backward of our custom autograd functions (the quantized matmul, the checkpointed layer) must leave nothing in
/// the caller's dispose scope: the trainer's scope lives until the step ends, so anything registered there during the
/// backward — a dequantized weight, a gradient handle, a recomputed activation — stays in memory for the whole
/// backward pass. Counting the scope's handles is deterministic, unlike measuring resident memory.
/// </summary>
public class BackwardScopeTests
{
    private static (long Before, long After, float[] Gradient) BackwardThroughQuantizedLayers(int layers)
    {
        manual_seed(3);
        var stack = Enumerable.Range(0, layers)
            .Select(_ => QuantizedLinear.Quantize(randn(64, 64) * 0.1, null, new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32)))
            .ToList();
        try
        {
            using var x = randn(2, 5, 64).requires_grad_(true);
            using var scope = NewDisposeScope();
            var h = x;
            foreach (var layer in stack) h = layer.forward(h);
            var loss = (h * h).sum();
            var before = scope.DisposablesCount;
            loss.backward();
            CustomBackward.ReleaseReturned();   // what the next step's first custom backward does
            return (before, scope.DisposablesCount, x.grad!.data<float>().ToArray());
        }
        finally
        {
            foreach (var layer in stack) layer.Dispose();
        }
    }

    [Fact]
    public void QuantizedMatmulBackwardRegistersNothingInTheCallersScope()
    {
        var (before, after, gradient) = BackwardThroughQuantizedLayers(3);
        Assert.Equal(before, after);   // before the fix: 3 more per layer (incoming gradient, dequantized weight, result)
        Assert.Contains(gradient, g => g != 0);
    }

    [Fact]
    public void CheckpointedBackwardOnAQuantizedBaseRegistersNothingInTheCallersScope()
    {
        using var model = TestModels.Create("llama");
        ModelQuantizer.Quantize(model, new QuantizationOptions(QuantizationType.Nf4, ScalarType.Float32));
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, LoraDropout = 0.1, TargetModules = TargetModules.AllLinear });
        adapter.Inject(model);
        LoraTestSupport.Randomize(adapter);
        model.train();
        model.GradientCheckpointing = true;
        using var ids = LoraTestSupport.Ids();
        using var scope = NewDisposeScope();
        var logits = model.Forward(ids);
        var loss = logits.to(ScalarType.Float32).logsumexp(-1).sum();
        var before = scope.DisposablesCount;
        loss.backward();
        CustomBackward.ReleaseReturned();
        Assert.Equal(before, scope.DisposablesCount);   // the recomputed layers lived in the backward's own scopes
        Assert.All(adapter.TrainableParameters.Where(p => p.Name.Contains("lora_A")), p => Assert.NotNull(p.Parameter.grad));
    }
}
