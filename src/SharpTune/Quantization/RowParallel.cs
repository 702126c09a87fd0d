namespace SharpTune.Quantization;

/// <summary>
/// Splits the output rows of a matrix–vector kernel over as many threads as libtorch's intra-op pool
/// (<c>torch.set_num_threads</c>) or, inside <see cref="Generation.DecodeThreads"/>, the count libtorch had before it was
/// narrowed to one, so our kernels and libtorch's share the same budget. The helper threads are our own and persistent:
/// a decode step calls a kernel some sixty times, tens of microseconds apart, and a helper that spins briefly between
/// calls starts at once, where waking a thread-pool worker (Parallel.For) costs more than a small product.
/// <para>
/// Each thread's share is one contiguous range (one stream for the prefetcher), handed out from a shared cursor: a
/// thread that finishes its own range takes any range whose helper has not started, and a helper that finds nothing
/// left is called off instead of waited for. A helper starts late whenever it was asleep, and on a virtual machine
/// whenever its core was lent elsewhere for a while; the caller used to wait for the helper's whole range then
/// (measured on M in bf16: 1.6–2.8 ms of a 8.5–10 ms step spent waiting, and decode 7 % faster, in alternate runs in one
/// process, once ranges could be taken over). Smaller blocks measured slower: they break the streams.
/// </para>
/// Small products, and calls made while another thread holds the helpers, run on the calling thread.
/// </summary>
internal static class RowParallel
{
    /// <summary>Below this many output rows a product runs on one thread.</summary>
    public const long MinRowsPerThread = 128;

    private static readonly object Gate = new();
    private static KernelWorker[] workers = [];
    private static readonly Job Current = new();

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
            Current.Start(body, rows, (rows + threads - 1) / threads);
            for (var t = 1; t < threads; t++) workers[t - 1].Post(Current);
            var failure = Current.Drain();
            for (var t = 1; t < threads; t++)
            {
                var error = workers[t - 1].Finish();   // every helper is called off or waited for, failed or not: none may
                failure ??= error;                      // still run when the next call posts to it
            }
            if (failure is not null) throw new AggregateException(failure);
        }
        finally
        {
            Monitor.Exit(Gate);
        }
    }

    /// <summary>One product's rows, taken a range at a time by whichever thread is free.</summary>
    private sealed class Job
    {
        private Action<long, long> body = (_, _) => { };
        private long rows, blockRows;
        private long cursor;

        public void Start(Action<long, long> work, long count, long block)
        {
            (body, rows, blockRows) = (work, count, block);
            Volatile.Write(ref cursor, 0);
        }

        /// <summary>Runs ranges until none is left; returns what the body threw, if anything (the other threads finish theirs).</summary>
        public Exception? Drain()
        {
            try
            {
                while (true)
                {
                    var end = Interlocked.Add(ref cursor, blockRows);
                    var start = end - blockRows;
                    if (start >= rows) return null;
                    body(start, Math.Min(end, rows));
                }
            }
            catch (Exception e)
            {
                Interlocked.Exchange(ref cursor, rows);   // the others take no further range
                return e;
            }
        }
    }

    /// <summary>One persistent helper: spins for a short while after each job, then sleeps until the next is posted.</summary>
    private sealed class KernelWorker
    {
        private const int Idle = 0, Posted = 1, Running = 2;
        private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 2000;   // 0.5 ms
        private readonly SemaphoreSlim wake = new(0);
        private Job? job;
        private Exception? error;
        private int state;        // Idle → Posted (caller) → Running (helper) → Idle (helper), or Posted → Idle (caller: called off)
        private int sleeping;     // 1 while blocked on wake

        public KernelWorker(int index)
        {
            new Thread(Loop) { IsBackground = true, Name = $"SharpTune kernel {index + 1}" }.Start();
        }

        public void Post(Job work)
        {
            (job, error) = (work, null);
            Volatile.Write(ref state, Posted);
            if (Interlocked.Exchange(ref sleeping, 0) == 1) wake.Release();
        }

        /// <summary>Calls the job off if the helper has not taken it, else waits for it; returns what it threw, if anything.</summary>
        public Exception? Finish()
        {
            if (Interlocked.CompareExchange(ref state, Idle, Posted) == Posted) return null;
            var spin = new SpinWait();
            while (Volatile.Read(ref state) != Idle) spin.SpinOnce(sleep1Threshold: -1);
            return error;
        }

        private void Loop()
        {
            while (true)
            {
                var start = System.Diagnostics.Stopwatch.GetTimestamp();
                while (Volatile.Read(ref state) != Posted && System.Diagnostics.Stopwatch.GetTimestamp() - start < SpinTicks) Thread.SpinWait(20);
                if (Interlocked.CompareExchange(ref state, Running, Posted) != Posted)
                {
                    Interlocked.Exchange(ref sleeping, 1);                     // a full fence: the check below must not move before it
                    if (Volatile.Read(ref state) != Posted) wake.Wait();       // a Post after this line releases the semaphore
                    Interlocked.Exchange(ref sleeping, 0);                     // a spurious wake-up only costs one more loop
                    continue;
                }
                error = job!.Drain();
                job = null;
                Volatile.Write(ref state, Idle);
            }
        }
    }
}
