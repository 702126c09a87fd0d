using SharpTune.Models;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>
/// Thread budget of the decode steps on the CPU: once the prefill is done (<see cref="Narrow"/>), libtorch runs
/// single-threaded and our matrix–vector kernels (<see cref="DenseMatVec"/>, the quantized ones, all through
/// <see cref="RowParallel"/>) get the threads libtorch had. Every large product of a step then runs in our kernels, and
/// what is left to libtorch (norms, rotary, single-query attention, sampling) is too small to split; with both pools
/// live, libtorch's OpenMP workers spin after each of its calls on the cores our kernel threads need (measured on the M
/// model in bf16: 12.4 ms a step this way against 15.7 ms with both). Prefill and training keep libtorch's threads.
/// OpenMP's thread count belongs to the calling thread, so work on other threads is unaffected. Disposing restores it.
/// </summary>
internal sealed class DecodeThreads(Device device, ScalarType weightDtype) : IDisposable
{
    private int libtorchThreads;        // 0 until narrowed
    private int previousOverride;

    /// <summary>Narrows libtorch to one thread for the decode steps, where our kernels serve this model's products.</summary>
    public void Narrow()
    {
        if (libtorchThreads > 0 || device.type != TorchSharp.DeviceType.CPU || !DenseMatVec.Available(weightDtype)) return;
        var threads = get_num_threads();
        if (threads <= 1) return;
        libtorchThreads = threads;
        previousOverride = RowParallel.ThreadsOverride;
        RowParallel.ThreadsOverride = threads;
        set_num_threads(1);
    }

    public void Dispose()
    {
        if (libtorchThreads == 0) return;
        set_num_threads(libtorchThreads);
        RowParallel.ThreadsOverride = previousOverride;
        libtorchThreads = 0;
    }
}
