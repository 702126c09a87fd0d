using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Gradient (activation) checkpointing for one block: the forward runs without keeping its intermediate activations,
/// and the backward runs the block again from its saved input before differentiating it — PyTorch's reentrant
/// torch.utils.checkpoint. TorchSharp has no checkpoint API, so this is a custom autograd function. The random-number
/// state is replayed so dropout masks in the recomputation equal the forward's.
/// </summary>
public sealed class ActivationCheckpoint : autograd.SingleTensorFunction<ActivationCheckpoint>
{
    public override string Name => nameof(ActivationCheckpoint);

    [ThreadStatic] private static int recomputing;

    /// <summary>
    /// Whether this thread is running a checkpointed block again inside the backward pass. Autograd then keeps what the
    /// recomputed block saves only until that block's own backward, one block at a time, so layers may let it keep
    /// tensors they must not keep in an ordinary forward (a quantized layer's dequantized weight).
    /// </summary>
    public static bool IsRecomputing => recomputing > 0;

    /// <summary>Runs <paramref name="block"/> on <paramref name="input"/> keeping only the input for the backward.</summary>
    public static Tensor Run(Func<Tensor, Tensor> block, Tensor input)
    {
        // Autograd records the function only if an input takes gradients; with a frozen embedding (adapter methods) the
        // first layer's input does not, yet the block's own parameters must still get theirs.
        if (!input.requires_grad) input = input.detach().requires_grad_(true);
        return apply(input, block);
    }

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var input = (Tensor)vars[0];
        var block = (Func<Tensor, Tensor>)vars[1];
        // The saved variable holds its own reference, so this handle may die with the caller's scope; a handle taken
        // out of every scope would instead keep the input alive until the garbage collector happens to run.
        ctx.save_for_backward([input.detach()]);
        ctx.save_data("block", block);
        using (var rng = get_rng_state()) ctx.save_data("rng", rng.data<byte>().ToArray());   // a byte tensor, kept as bytes
        using var noGrad = no_grad();
        return block(input);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        // The recomputed block's tensors live in a scope of this backward, not the training step's: otherwise every
        // layer's recomputation would stay alive until the step ends (see CustomBackward).
        var inputGradient = CustomBackward.Run(gradOutput, grad =>
        {
            var input = ctx.get_saved_variables()[0];
            var block = (Func<Tensor, Tensor>)ctx.get_data("block");
            using var forwardRng = tensor((byte[])ctx.get_data("rng"), dtype: ScalarType.Byte);
            using var currentRng = get_rng_state();
            set_rng_state(forwardRng);
            using var enabled = enable_grad();
            var leaf = input.detach().requires_grad_(true);
            Tensor output;
            recomputing++;
            try { output = block(leaf); }
            finally { recomputing--; }
            set_rng_state(currentRng);
            output.backward([grad]);
            CustomBackward.ReleaseReturned();   // the nested backward's results are libtorch's now
            return leaf.grad!;
        });
        return [inputGradient, null!];   // one gradient per apply() argument; the block itself has none
    }
}
