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
    /// <summary>
    /// Kernel threads for decode steps on this thread when set, instead of libtorch's count: a server's model thread
    /// keeps a core free of libtorch's spinning team, but our kernel threads sleep between steps, so its decode steps
    /// may use every core (measured on M in bf16 on 2 cores: ~70 tok/s with one kernel thread, ~90 with two).
    /// </summary>
    [ThreadStatic] internal static int? KernelThreads;

    private bool narrowed;
    private int libtorchThreads;
    private int previousOverride;

    /// <summary>Narrows libtorch to one thread for the decode steps, where our kernels serve this model's products.</summary>
    public void Narrow()
    {
        if (narrowed || device.type != TorchSharp.DeviceType.CPU || !DenseMatVec.Available(weightDtype)) return;
        var threads = get_num_threads();
        var kernels = KernelThreads ?? threads;
        if (threads <= 1 && kernels <= 1) return;
        narrowed = true;
        libtorchThreads = threads;
        previousOverride = RowParallel.ThreadsOverride;
        RowParallel.ThreadsOverride = kernels;
        if (threads > 1) set_num_threads(1);
    }

    public void Dispose()
    {
        if (!narrowed) return;
        if (libtorchThreads > 1) set_num_threads(libtorchThreads);
        RowParallel.ThreadsOverride = previousOverride;
        narrowed = false;
    }
}
