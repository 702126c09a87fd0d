using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// A non-parameter helper object (RoPE frequencies) built lazily for the device the activations are on, and rebuilt
/// when they move, so models stay device-agnostic without registering buffers that would appear in the state dict.
/// Always built as ordinary tensors, never inference-mode ones, whichever mode the first caller runs in.
/// </summary>
internal sealed class DeviceCached<T>(Func<Device, T> build) where T : class, IDisposable
{
    private T? value;
    private string? device;

    public T For(Device where)
    {
        var key = where.ToString();
        if (value is null || device != key)
        {
            value?.Dispose();
            using var normal = inference_mode(false);   // built during generation, still used by training later
            value = build(where);
            device = key;
        }
        return value;
    }
}
