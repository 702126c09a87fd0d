using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Gradient (activation) checkpointing for one block: the forward runs without keeping its intermediate activations,
/// and the backward runs the block again from its saved input before differentiating it — PyTorch's reentrant
/// torch.utils.checkpoint. TorchSharp has no checkpoint API, so this is a custom autograd function. The CPU generator's
/// state is saved and restored around the recomputation, so on the CPU dropout masks in the recomputation equal the
/// forward's. PyTorch does the same for the CUDA generators; TorchSharp 0.107 cannot read or set a CUDA generator's state
/// (see <see cref="Runtime.DeviceRandom"/>), so on a GPU a layer with dropout draws new masks when recomputed and its
/// gradients are not exactly those of its forward (the run logs a warning). Reseeding the GPU per block would fix the
/// recomputation but not match a forward without gradients (cached MNRL's first pass runs unchecked), so it is not done.
/// </summary>
public sealed class ActivationCheckpoint : autograd.SingleTensorFunction<ActivationCheckpoint>
{
    public override string Name => nameof(ActivationCheckpoint);

    /// <summary>
    /// How many of a model's <paramref name="layers"/> decoder layers, from the first, are recomputed when checkpointing
    /// is on only because the base is quantized (and the user named no count): every layer but the last, or null (every
    /// layer) for a one-layer model. A quantized base always trains an adapter, so its head is frozen and the loss runs
    /// block by block with little memory of its own; the last layer's backward comes right after the loss, so
    /// recomputing it would save memory only while the loss runs, at the price of one layer's forward per step
    /// (measured on M: 8 MB more at the peak, 0.02–0.04× more of the bf16 base's tokens/s; docs/benchmarks.md).
    /// </summary>
    public static int? QuantizedBaseDefault(int layers) => layers > 1 ? layers - 1 : null;

    [ThreadStatic] private static int recomputing;

    /// <summary>
    /// Whether this thread is running a checkpointed block again inside the backward pass. Autograd then keeps what the
    /// recomputed block saves only until that block's own backward, one block at a time, so layers may let it keep
    /// tensors they must not keep in an ordinary forward (a quantized layer's dequantized weight).
    /// </summary>
    public static bool IsRecomputing => recomputing > 0;

    // Selective recomputation: tensors a block's forward offers to keep (see Keep) and, in its recomputation, the ones
    // it kept, handed back in the same order.
    [ThreadStatic] private static List<Tensor>? keeping;
    [ThreadStatic] private static Queue<Tensor>? kept;

    /// <summary>
    /// Whether the checkpointed block now running its forward keeps what it passes to <see cref="Keep"/> for its
    /// recomputation (selective recomputation: products that are costly to compute again and cheap to store).
    /// </summary>
    public static bool IsKeeping => keeping is not null;

    /// <summary>
    /// In a keeping block's forward (<see cref="IsKeeping"/>): keeps <paramref name="value"/> until the block's backward,
    /// where the recomputation takes it back with <see cref="TakeKept"/>, in the same order. Autograd holds it (a saved
    /// tensor of this function), so it is freed with the graph even if no backward runs.
    /// </summary>
    public static void Keep(Tensor value)
    {
        if (keeping is null) throw new InvalidOperationException("only a checkpointed block's forward keeps tensors for its recomputation");
        keeping.Add(value.detach().DetachFromDisposeScope());   // a handle of its own: the caller's scope may end first
    }

    /// <summary>Whether the block being recomputed has kept tensors left to take.</summary>
    public static bool HasKept => kept is { Count: > 0 };

    /// <summary>The next tensor the block's forward kept (see <see cref="Keep"/>).</summary>
    public static Tensor TakeKept() => kept is { Count: > 0 } queue
        ? queue.Dequeue()
        : throw new InvalidOperationException("the recomputation asked for more kept tensors than the forward kept");

    /// <summary>Runs <paramref name="block"/> on <paramref name="input"/> keeping only the input for the backward.</summary>
    /// <param name="keepProducts">Let the block keep tensors for its recomputation (<see cref="Keep"/>).</param>
    public static Tensor Run(Func<Tensor, Tensor> block, Tensor input, bool keepProducts = false)
    {
        // Autograd records the function only if an input takes gradients; with a frozen embedding (adapter methods) the
        // first layer's input does not, yet the block's own parameters must still get theirs.
        if (!input.requires_grad) input = input.detach().requires_grad_(true);
        var output = CustomFunctionOutputs.Apply(() => apply(input, block, keepProducts));
        // TorchSharp hands what forward saved to libtorch only after forward returns: the kept handles live until here.
        if (keptHandles is { } handles)
            foreach (var t in handles) t.Dispose();
        keptHandles = null;
        return output;
    }

    [ThreadStatic] private static List<Tensor>? keptHandles;

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var input = (Tensor)vars[0];
        var block = (Func<Tensor, Tensor>)vars[1];
        var keepProducts = vars.Length > 2 && (bool)vars[2];
        CustomFunctionOutputs.Record(ctx);
        ctx.save_data("block", block);
        using (var rng = get_rng_state()) ctx.save_data("rng", rng.data<byte>().ToArray());   // a byte tensor, kept as bytes
        using var noGrad = no_grad();
        // The forward without gradients computes what the recomputation will (libtorch's operations, or a kernel that is
        // bit for bit the same: RoPE's), so a checkpointed layer's gradients are the uncheckpointed ones bit for bit.
        using var sameOperations = InferenceShortcuts.DisableInexact();
        var outer = keeping;
        keeping = keepProducts ? [] : null;
        Tensor output;
        List<Tensor> keptHere;
        try { output = block(input); }
        finally { (keptHere, keeping) = (keeping ?? [], outer); }
        // Saved variables hold their own references, so these handles may die once libtorch has them (the input's with
        // the caller's scope, the kept ones in Run); a handle left to no scope would keep its tensor alive until the
        // garbage collector happens to run.
        ctx.save_for_backward([input.detach(), .. keptHere]);
        keptHandles = keptHere;
        return output;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        // The recomputed block's tensors live in a scope of this backward, not the training step's: otherwise every
        // layer's recomputation would stay alive until the step ends (see CustomBackward).
        var inputGradient = CustomBackward.Run(gradOutput, grad =>
        {
            var saved = ctx.get_saved_variables();
            var input = saved[0];
            var block = (Func<Tensor, Tensor>)ctx.get_data("block");
            using var forwardRng = tensor((byte[])ctx.get_data("rng"), dtype: ScalarType.Byte);
            using var currentRng = get_rng_state();
            set_rng_state(forwardRng);
            using var enabled = enable_grad();
            var leaf = input.detach().requires_grad_(true);
            Tensor output;
            var outer = kept;
            kept = new Queue<Tensor>(saved.Skip(1));
            recomputing++;
            try
            {
                output = block(leaf);
                if (kept.Count > 0) throw new InvalidOperationException($"the recomputation left {kept.Count} kept tensors unused");
            }
            finally
            {
                recomputing--;
                kept = outer;
            }
            set_rng_state(currentRng);
            output.backward([grad]);
            CustomBackward.ReleaseReturned();   // the nested backward's results are libtorch's now
            return leaf.grad!;
        });
        return [inputGradient, null!, null!];   // one gradient per apply() argument; the block and the flag have none
    }
}
