namespace SharpTune.Runtime;

/// <summary>
/// The process's resident memory as Linux reports it (/proc/self/status), with its high-water mark reset on demand
/// ("5" to /proc/self/clear_refs, Linux ≥ 4.0): how a phase's peak is measured from inside the process.
/// </summary>
internal static class ResidentMemory
{
    public static bool IsSupported => OperatingSystem.IsLinux() && File.Exists("/proc/self/clear_refs") && File.Exists("/proc/self/status");

    /// <summary>Collects the managed heap, returns freed C-heap pages to the kernel, resets VmHWM to VmRSS and returns VmRSS in bytes.</summary>
    public static long ResetPeakAndReadResident()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        AllocatorTuning.ReleaseFreeMemory();
        File.WriteAllText("/proc/self/clear_refs", "5");
        return ReadBytes("VmRSS");
    }

    /// <summary>VmHWM in bytes: the most resident memory since the process started or since the last reset.</summary>
    public static long PeakResident() => ReadBytes("VmHWM");

    private static long ReadBytes(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0]) * 1024;
    }
}
