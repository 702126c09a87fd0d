namespace SharpTune.Quantization;

/// <summary>
/// Splits the output rows of a matrix–vector kernel into one contiguous range per thread, using as many threads as
/// libtorch's intra-op pool (<c>torch.set_num_threads</c>) or, inside <see cref="Generation.DecodeThreads"/>, the count libtorch had
/// before it was narrowed to one, so our kernels and libtorch's share the same budget. The helper threads are our own
/// and persistent: a decode step calls a kernel some fifty times, tens of microseconds apart, and a helper that spins
/// briefly between calls starts each range at once, where waking a thread-pool worker (Parallel.For) costs more than a
/// small product. Small products, and calls made while another thread holds the helpers, run on the calling thread.
/// </summary>
internal static class RowParallel
{
    /// <summary>Below this many output rows a product runs on one thread.</summary>
    public const long MinRowsPerThread = 128;

    private static readonly object Gate = new();
    private static KernelWorker[] workers = [];

    /// <summary>Threads for the kernels while libtorch runs single-threaded (set by <see cref="Generation.DecodeThreads"/>); 0 = libtorch's count.</summary>
    [ThreadStatic] internal static int ThreadsOverride;

    public static void For(long rows, Action<long, long> body) => For(rows, body, MinRowsPerThread);

    /// <param name="minRowsPerThread">Fewest rows worth a thread of their own (rows of unequal cost say so here).</param>
    public static void For(long rows, Action<long, long> body, long minRowsPerThread)
    {
        var budget = ThreadsOverride > 0 ? ThreadsOverride : TorchSharp.torch.get_num_threads();
        var threads = (int)Math.Min(Math.Max(1, budget), Math.Max(1, rows / minRowsPerThread));
        if (threads <= 1 || !Monitor.TryEnter(Gate))
        {
            body(0, rows);
            return;
        }
        try
        {
            if (workers.Length < threads - 1)
                workers = [.. workers, .. Enumerable.Range(workers.Length, threads - 1 - workers.Length).Select(i => new KernelWorker(i))];
            var chunk = (rows + threads - 1) / threads;
            for (var t = 1; t < threads; t++)
                workers[t - 1].Post(body, t * chunk, Math.Min(rows, (t + 1) * chunk));
            Exception? failure = null;
            try
            {
                body(0, chunk);
            }
            catch (Exception e)
            {
                failure = e;
            }
            for (var t = 1; t < threads; t++)
            {
                var error = workers[t - 1].Wait();   // every helper is waited for, failed or not: none may still run
                failure ??= error;                   // when the next call posts to it
            }
            if (failure is not null) throw new AggregateException(failure);
        }
        finally
        {
            Monitor.Exit(Gate);
        }
    }

    /// <summary>One persistent helper: spins for a short while after each range, then sleeps until the next is posted.</summary>
    private sealed class KernelWorker
    {
        private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 2000;   // 0.5 ms
        private readonly SemaphoreSlim wake = new(0);
        private Action<long, long>? body;
        private long from, to;
        private Exception? error;
        private volatile int posted;     // 1 while a range waits or runs
        private int sleeping;            // 1 while blocked on wake

        public KernelWorker(int index)
        {
            new Thread(Loop) { IsBackground = true, Name = $"SharpTune kernel {index + 1}" }.Start();
        }

        public void Post(Action<long, long> work, long start, long end)
        {
            (body, from, to, error) = (work, start, end, null);
            posted = 1;
            if (Interlocked.Exchange(ref sleeping, 0) == 1) wake.Release();
        }

        /// <summary>Waits for the posted range; returns what it threw, if anything.</summary>
        public Exception? Wait()
        {
            var spin = new SpinWait();
            while (posted == 1) spin.SpinOnce(sleep1Threshold: -1);
            return error;
        }

        private void Loop()
        {
            while (true)
            {
                var start = System.Diagnostics.Stopwatch.GetTimestamp();
                while (posted == 0 && System.Diagnostics.Stopwatch.GetTimestamp() - start < SpinTicks) Thread.SpinWait(20);
                if (posted == 0)
                {
                    Interlocked.Exchange(ref sleeping, 1);   // a full fence: the check below must not move before it
                    if (posted == 0) wake.Wait();            // a Post after this line releases the semaphore
                    Interlocked.Exchange(ref sleeping, 0);   // a spurious wake-up only costs one more loop
                    continue;
                }
                try
                {
                    body!(from, to);
                }
                catch (Exception e)
                {
                    error = e;
                }
                body = null;
                posted = 0;
            }
        }
    }
}
