namespace SharpTune.Quantization;

/// <summary>
/// Splits the output rows of a matrix–vector kernel into one contiguous range per thread, using as many threads as
/// libtorch's intra-op pool (<c>torch.set_num_threads</c>), so our kernels and libtorch's share the same budget.
/// Small products run on the calling thread: waking a worker costs more than it saves.
/// </summary>
internal static class RowParallel
{
    /// <summary>Below this many output rows a product runs on one thread.</summary>
    public const long MinRowsPerThread = 128;

    public static void For(long rows, Action<long, long> body)
    {
        var threads = (int)Math.Min(Math.Max(1, TorchSharp.torch.get_num_threads()), Math.Max(1, rows / MinRowsPerThread));
        if (threads <= 1)
        {
            body(0, rows);
            return;
        }
        var chunk = (rows + threads - 1) / threads;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            var from = t * chunk;
            body(from, Math.Min(rows, from + chunk));
        });
    }
}
