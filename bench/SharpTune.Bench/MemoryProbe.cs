namespace SharpTune.Bench;

/// <summary>Peak resident memory of this process (VmHWM from /proc/self/status on Linux).</summary>
internal static class MemoryProbe
{
    public static double PeakRssGiB()
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return Environment.WorkingSet / 1073741824.0;
        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return line is null ? double.NaN : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1048576.0;
    }
}
