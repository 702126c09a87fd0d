using System.Diagnostics;

namespace SharpTune.Comparison;

/// <summary>
/// Samples this process's working set (resident memory: managed heap, TorchSharp's native tensors and everything else
/// mapped in) on a background timer, keeping the peak. The baseline is the working set when sampling starts, so the
/// peak above it is what the measured work added. Sampling can miss a spike shorter than the interval.
/// </summary>
public sealed class PeakMemorySampler : IDisposable
{
    private readonly Process process = Process.GetCurrentProcess();
    private readonly Timer timer;
    private long peak;

    public PeakMemorySampler(TimeSpan? interval = null)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Baseline = Sample();
        peak = Baseline;
        var period = interval ?? TimeSpan.FromMilliseconds(50);
        timer = new Timer(_ => Sample(), null, period, period);
    }

    /// <summary>Working set in bytes when sampling started.</summary>
    public long Baseline { get; }

    /// <summary>Highest working set seen so far, in bytes.</summary>
    public long Peak
    {
        get
        {
            Sample();
            return Interlocked.Read(ref peak);
        }
    }

    private long Sample()
    {
        long current;
        lock (process)
        {
            process.Refresh();
            current = process.WorkingSet64;
        }
        long seen;
        while (current > (seen = Interlocked.Read(ref peak)) && Interlocked.CompareExchange(ref peak, current, seen) != seen) { }
        return current;
    }

    public void Dispose() => timer.Dispose();
}
