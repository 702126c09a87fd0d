namespace SharpTune.Models;

/// <summary>
/// Inference-only shortcuts that compute what the general path computes with fewer operations: fused projections
/// (<see cref="FusedLinear"/>) and single-query attention without repeated KV heads or window masks. They are on by
/// default; tests switch them off on their own thread to compare the fast decode with the general path token for token.
/// </summary>
internal static class InferenceShortcuts
{
    [ThreadStatic] private static bool disabled;

    /// <summary>Whether the shortcuts apply on this thread.</summary>
    public static bool Enabled => !disabled;

    /// <summary>
    /// Whether one of our CPU kernels may compute on <paramref name="x"/>: shortcuts on, no gradient recorded (the
    /// kernels build no autograd graph), a CPU tensor. Each kernel adds its own dtype and shape conditions.
    /// </summary>
    public static bool ForCpuKernel(TorchSharp.torch.Tensor x) =>
        Enabled && !TorchSharp.torch.is_grad_enabled() && x.device_type == TorchSharp.DeviceType.CPU;

    /// <summary>Turns the shortcuts off on this thread until the result is disposed.</summary>
    public static IDisposable Disable()
    {
        var before = disabled;
        disabled = true;
        return new Restore(before);
    }

    private sealed class Restore(bool before) : IDisposable
    {
        public void Dispose() => disabled = before;
    }
}
