namespace SharpTune.Models;

/// <summary>
/// Inference-only shortcuts that compute what the general path computes with fewer operations: fused projections
/// (<see cref="FusedLinear"/>) and single-query attention without repeated KV heads or window masks. They are on by
/// default; tests switch them off on their own thread to compare the fast decode with the general path token for token.
/// </summary>
internal static class InferenceShortcuts
{
    [ThreadStatic] private static bool disabled;
    [ThreadStatic] private static bool inexactDisabled;
    [ThreadStatic] private static bool layerStackDisabled;

    /// <summary>Whether the shortcuts apply on this thread.</summary>
    public static bool Enabled => !disabled && !inexactDisabled;

    /// <summary>
    /// Whether one of our CPU kernels may compute on <paramref name="x"/>: shortcuts on, no gradient recorded (the
    /// kernels build no autograd graph), a CPU tensor. Each kernel adds its own dtype and shape conditions.
    /// </summary>
    public static bool ForCpuKernel(TorchSharp.torch.Tensor x) => !inexactDisabled && ForExactCpuKernel(x);

    /// <summary>
    /// As <see cref="ForCpuKernel"/>, for a kernel whose results are bit for bit the tensor form's (RoPE's): it also
    /// applies where only such kernels may run (<see cref="DisableInexact"/>).
    /// </summary>
    public static bool ForExactCpuKernel(TorchSharp.torch.Tensor x) =>
        !disabled && !TorchSharp.torch.is_grad_enabled() && x.device_type == TorchSharp.DeviceType.CPU;

    /// <summary>Whether a decode step may run every layer in one pass (<see cref="DecodeLayerStack"/>) on this thread.</summary>
    public static bool LayerStackEnabled => !disabled && !layerStackDisabled;

    /// <summary>Turns the shortcuts off on this thread until the result is disposed.</summary>
    public static IDisposable Disable()
    {
        var before = disabled;
        disabled = true;
        return new Runtime.RestoreOnDispose(() => disabled = before);
    }

    /// <summary>
    /// Turns off, on this thread until the result is disposed, every shortcut whose results may differ from the general
    /// path's in the last bits, and keeps those that match it bit for bit (<see cref="ForExactCpuKernel"/>): for a pass
    /// that must compute exactly what a later pass with gradients will (a checkpointed layer's first forward).
    /// </summary>
    public static IDisposable DisableInexact()
    {
        var before = inexactDisabled;
        inexactDisabled = true;
        return new Runtime.RestoreOnDispose(() => inexactDisabled = before);
    }

    /// <summary>
    /// Turns off only the whole-stack decode pass on this thread until the result is disposed, so each layer runs through
    /// its modules and their per-operation kernels (tests compare the two bit for bit).
    /// </summary>
    public static IDisposable DisableLayerStack()
    {
        var before = layerStackDisabled;
        layerStackDisabled = true;
        return new Runtime.RestoreOnDispose(() => layerStackDisabled = before);
    }
}
