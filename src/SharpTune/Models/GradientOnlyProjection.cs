using SharpTune.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// A frozen projection whose output value nothing reads, only its gradient path: the last projection of a decoder layer
/// being recomputed for the backward (<see cref="ActivationCheckpoint"/>). The recomputed layer's output exists only to
/// carry the graph (its value was already used in the forward), and a frozen linear layer's backward needs its weight,
/// never its output, so the recomputation skips the product — for MLP down-projections a fifth of a Llama layer's
/// matmul work — and returns zeros in its place; the backward computes ∂L/∂x = ∂L/∂y · W as the layer's own would.
/// Only frozen plain or quantized linear layers qualify: a trainable weight, an adapter or anything that reads the value
/// (DoRA's magnitude, IA3's output scaling, a bottleneck adapter) keeps the ordinary forward.
/// </summary>
internal sealed class GradientOnlyProjection : autograd.SingleTensorFunction<GradientOnlyProjection>
{
    public override string Name => nameof(GradientOnlyProjection);

    [ThreadStatic] private static long skipped;

    /// <summary>Products this thread has left out so far (tests check that the recomputation takes this path).</summary>
    internal static long SkippedOnThisThread => skipped;

    /// <summary>Off: recomputations run every product again, as before (for benchmarks comparing the two).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>Whether <paramref name="layer"/> is a frozen linear map whose backward needs no forward value.</summary>
    public static bool Supports(nn.Module<Tensor, Tensor> layer) => Enabled && layer switch
    {
        QuantizedLinear => true,   // frozen by construction, its bias too
        Linear linear => !linear.weight!.requires_grad && linear.bias is not { requires_grad: true },
        _ => false,
    };

    /// <summary>Zeros shaped like <paramref name="layer"/>'s output for <paramref name="input"/>, with its input gradient.</summary>
    public static Tensor Apply(nn.Module<Tensor, Tensor> layer, Tensor input) => apply(input, layer);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var input = (Tensor)vars[0];
        var layer = (nn.Module<Tensor, Tensor>)vars[1];
        ctx.save_data("layer", layer);
        skipped++;
        var shape = input.shape.ToArray();
        shape[^1] = layer switch { QuantizedLinear q => q.OutFeatures, Linear l => l.weight!.shape[0], _ => throw new InvalidOperationException() };
        return zeros(shape, input.dtype, input.device);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        var layer = (nn.Module<Tensor, Tensor>)ctx.get_data("layer");
        var inputGradient = CustomBackward.Run(gradOutput, grad =>
        {
            using var noGrad = no_grad();
            return layer switch
            {
                QuantizedLinear quantized => quantized.InputGradient(grad),
                Linear linear => grad.matmul(linear.weight!),
                _ => throw new InvalidOperationException(),
            };
        });
        return [inputGradient, null!];
    }
}
