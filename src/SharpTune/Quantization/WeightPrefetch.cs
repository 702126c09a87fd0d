using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace SharpTune.Quantization;

/// <summary>
/// Software prefetch for the decode kernels, which stream each weight once per step: a thread that asks for the row a
/// few rows ahead while it multiplies the current one keeps more memory requests in flight than the hardware prefetcher
/// alone (measured on M in bf16: each thread streamed ~18 GB/s without, and decode ran 11–15 % faster with, in
/// alternate runs in one process, for 1 to 16 rows ahead alike). The lines are asked into L2, not L1 (prefetcht1): a
/// weight line is read once, a few rows later, so L2 is near enough, and L1 is left to the input rows the loop reads
/// against every weight row (M bf16, one row: 123–156 against 95–127 tok/s in six alternate pairs, five of them faster;
/// the int8 and NF4 kernels within noise, eight rows unchanged).
/// </summary>
internal static class WeightPrefetch
{
    /// <summary>How many rows ahead of the current one a kernel asks for.</summary>
    public const long RowsAhead = 4;

    /// <summary>Asks for the cache lines of [start, start + bytes), stopping at <paramref name="end"/> (the thread's last row).</summary>
    public static unsafe void Lines(byte* start, long bytes, byte* end)
    {
        if (!Sse.IsSupported) return;
        var stop = Math.Min((long)end, (long)start + bytes);
        for (var line = (long)start; line < stop; line += 64) Sse.Prefetch1((void*)line);
    }

    /// <summary>
    /// Asks for the two cache lines at <paramref name="next"/> unless it is at or past <paramref name="end"/>: one
    /// 128-byte step of a dot product's loop, so the requests for the row ahead are spread over the current row's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Step(byte* next, byte* end)
    {
        if (next >= end || !Sse.IsSupported) return;
        Sse.Prefetch1(next);
        Sse.Prefetch1(next + 64);
    }
}
