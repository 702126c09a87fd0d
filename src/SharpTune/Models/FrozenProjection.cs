using SharpTune.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// A frozen projection recorded for autograd without multiplying again, inside a checkpointed layer's recomputation
/// (<see cref="ActivationCheckpoint"/>). A frozen linear layer's backward needs its weight, never its input's product,
/// so the recomputation may hand autograd a value it already has or none at all, and the backward computes
/// ∂L/∂x = ∂L/∂y · W as the layer's own would:
/// <list type="bullet">
/// <item><see cref="WithoutValue"/>: the layer's last projection (a Llama MLP's down_proj), whose value only feeds the
/// recomputed output, which nothing reads (its value was used in the forward): zeros stand in for it — a fifth of a
/// Llama layer's matmul work left out.</item>
/// <item><see cref="WithKnownValue"/>: a product the forward kept (selective recomputation, as Megatron-LM keeps what is
/// costly to compute and cheap to store): the gate and up products of an MLP.</item>
/// </list>
/// Only frozen plain or quantized linear layers qualify: a trainable weight, an adapter or anything else that wraps the
/// layer keeps the ordinary forward.
/// </summary>
internal sealed class FrozenProjection : autograd.SingleTensorFunction<FrozenProjection>
{
    public override string Name => nameof(FrozenProjection);

    [ThreadStatic] private static long skipped;

    /// <summary>Products this thread has not multiplied again so far (tests check that the recomputation takes this path).</summary>
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
    public static Tensor WithoutValue(nn.Module<Tensor, Tensor> layer, Tensor input) => Apply(input, layer, NoValue);

    private static readonly object NoValue = new();

    /// <summary><paramref name="value"/>, the layer's output for <paramref name="input"/> computed earlier, with its input gradient.</summary>
    public static Tensor WithKnownValue(nn.Module<Tensor, Tensor> layer, Tensor input, Tensor value) => Apply(input, layer, value);

    private static Tensor Apply(Tensor input, nn.Module<Tensor, Tensor> layer, object value) =>
        CustomFunctionOutputs.Apply(() => apply(input, layer, value));

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var input = (Tensor)vars[0];
        var layer = (nn.Module<Tensor, Tensor>)vars[1];
        CustomFunctionOutputs.Record(ctx);
        ctx.save_data("layer", layer);
        skipped++;
        if (vars[2] is Tensor value) return value.detach();   // a tensor of its own for autograd to attach this node to
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
        return [inputGradient, null!, null!];
    }
}
