using TorchSharp;

namespace SharpTune.Runtime;

/// <summary>
/// One place that prepares libtorch for SharpTune: thread count and device choice. Device-agnostic code asks
/// <see cref="DefaultDevice"/> rather than naming CPU or CUDA itself.
/// </summary>
public static class TorchRuntime
{
    private static readonly object Gate = new();
    private static bool initialised;
    private static torch.Device? device;

    /// <summary>The device chosen once at start-up: CUDA when a CUDA build of TorchSharp sees a GPU, else CPU.
    /// The environment variable SHARPTUNE_DEVICE (cpu, cuda, cuda:1…) overrides the choice.</summary>
    public static torch.Device DefaultDevice
    {
        get
        {
            EnsureInitialised();
            return device!;
        }
    }

    /// <summary>Initialises libtorch once: threads from SHARPTUNE_THREADS or all cores.</summary>
    public static void EnsureInitialised()
    {
        if (initialised) return;
        lock (Gate)
        {
            if (initialised) return;
            AllocatorTuning.Apply();
            var threads = Environment.GetEnvironmentVariable("SHARPTUNE_THREADS");
            torch.set_num_threads(int.TryParse(threads, out var n) && n > 0 ? n : Environment.ProcessorCount);
            var requested = Environment.GetEnvironmentVariable("SHARPTUNE_DEVICE");
            device = !string.IsNullOrWhiteSpace(requested)
                ? new torch.Device(requested)
                : torch.cuda.is_available() ? torch.CUDA : torch.CPU;
            initialised = true;
        }
    }
}
