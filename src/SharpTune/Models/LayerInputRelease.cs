using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// The rule every layer loop (<see cref="DecoderModel"/>, <see cref="RotaryLayerStack"/>, GPT-2's) applies between
/// layers: once a layer's output exists, its input is freed when no autograd graph can need it again, so a forward
/// without gradients (inference mode, no_grad, a frozen reference's scoring) holds one layer's hidden states at a time
/// instead of every layer's until the stack returns. With a graph being recorded the input stays: the backward reads it
/// (or recomputes from it, when checkpointed). Freeing a tensor handle only drops its reference, so an output that is a
/// view of its input keeps the storage it needs; the values computed are the same either way.
/// </summary>
internal static class LayerInputRelease
{
    /// <summary>
    /// Returns <paramref name="output"/>, having disposed <paramref name="input"/> when it is not the loop's first input
    /// (the caller's tensor, which it may still hold), not the output itself, and the output records no graph.
    /// </summary>
    public static Tensor Next(Tensor input, Tensor output, Tensor callersInput)
    {
        if (!ReferenceEquals(input, callersInput) && !ReferenceEquals(input, output) && !output.requires_grad) input.Dispose();
        return output;
    }
}
