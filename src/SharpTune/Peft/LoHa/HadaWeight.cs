using SharpTune.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Peft.LoHa;

/// <summary>
/// LoHa's (w1a·w1b) ⊙ (w2a·w2b) as an autograd function that keeps only the four rank-r factors for the backward and
/// multiplies the two (out, in) products again there, as PEFT's <c>HadaWeight</c>
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/loha/layer.py:364-384, copied from LyCORIS).
/// Plain autograd would keep both full products of every wrapped layer from the forward until the backward: on an
/// all-linear Llama layer that is twice the layer's weights in fp32, held for the whole step. The backward's gradients
/// are the ones autograd derives, in the same operations.
/// </summary>
internal sealed class HadaWeight : autograd.SingleTensorFunction<HadaWeight>
{
    public override string Name => nameof(HadaWeight);

    /// <summary>(w1a·w1b) ⊙ (w2a·w2b), (out, in), with gradients for the four factors.</summary>
    public static Tensor Apply(Tensor w1a, Tensor w1b, Tensor w2a, Tensor w2b) =>
        CustomFunctionOutputs.Apply(() => apply(w1a, w1b, w2a, w2b));

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var (w1a, w1b, w2a, w2b) = ((Tensor)vars[0], (Tensor)vars[1], (Tensor)vars[2], (Tensor)vars[3]);
        CustomFunctionOutputs.Record(ctx);
        ctx.save_for_backward([w1a, w1b, w2a, w2b]);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return (w1a.matmul(w1b) * w2a.matmul(w2b)).MoveToOuterDisposeScope();   // (out, in)
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput) =>
        CustomBackward.Run(gradOutput, 4, grad =>
        {
            using var noGrad = no_grad();
            var saved = ctx.get_saved_variables();
            var (w1a, w1b, w2a, w2b) = (saved[0], saved[1], saved[2], saved[3]);
            var first = grad * w2a.matmul(w2b);    // ∂L/∂(w1a·w1b), (out, in)
            var second = grad * w1a.matmul(w1b);   // ∂L/∂(w2a·w2b)
            return [first.matmul(w1b.t()), w1a.t().matmul(first), second.matmul(w2b.t()), w2a.t().matmul(second)];
        });
}
