namespace SharpTune.Bench;

/// <summary>Peak resident memory of this process (VmHWM from /proc/self/status on Linux).</summary>
internal static class MemoryProbe
{
    public static double PeakRssGiB() => StatusGiB("VmHWM:");

    /// <summary>Resident memory now (VmRSS): subtracted from the peak, the growth the memory estimator predicts.</summary>
    public static double RssGiB() => StatusGiB("VmRSS:");

    /// <summary>Resident memory now, split into anonymous (allocations) and file-backed (mapped files) pages.</summary>
    public static string RssSplit() => $"RSS {RssGiB():F3} GiB (anonymous {StatusGiB("RssAnon:"):F3}, files {StatusGiB("RssFile:"):F3})";

    private static double StatusGiB(string field)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return Environment.WorkingSet / 1073741824.0;
        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith(field, StringComparison.Ordinal));
        return line is null ? double.NaN : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1048576.0;
    }
}
