using static TorchSharp.torch;

namespace SharpTune.Server.Engine;

/// <summary>
/// libtorch's intra-op thread count on the model thread alone. libtorch keeps the count per thread (OpenMP's nthreads
/// setting and MKL's local one) and reads a process-wide default only when a thread first uses it, so the model thread
/// can run with fewer threads than the rest of the process (a host application, other servers in tests) without
/// changing theirs. Why fewer: the HTTP work (JSON, sockets, the clients' own streams) needs a core while the model
/// decodes; with every core in libtorch's team, each parallel region waits for a team thread the scheduler gave to that
/// work, and libtorch's idle team threads spin on the core the HTTP work needs.
/// </summary>
internal static class ModelThreads
{
    /// <summary>Threads the model thread uses unless told: every core but one (at least one); SHARPTUNE_THREADS when set.</summary>
    public static int Default()
    {
        if (Environment.GetEnvironmentVariable("SHARPTUNE_THREADS") is { Length: > 0 }) return get_num_threads();
        return Math.Max(1, Environment.ProcessorCount - 1);
    }

    /// <summary>Sets the calling thread's count to <paramref name="threads"/>, leaving the process default as it was.</summary>
    public static void Apply(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "the model needs at least one thread");
        var processDefault = get_num_threads();   // also initialises this thread from the process default
        if (threads == processDefault) return;
        set_num_threads(threads);                 // this thread's count, and the process default …
        var restore = new Thread(() => set_num_threads(processDefault)) { IsBackground = true };   // … put back from a thread of its own
        restore.Start();
        restore.Join();
    }
}
