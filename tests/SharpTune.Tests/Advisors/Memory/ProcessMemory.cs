using System.Runtime.InteropServices;

namespace SharpTune.Tests.Advisors.Memory;

/// <summary>
/// Linux process memory as the kernel counts it (/proc/self/status). libtorch's CPU tensors are plain malloc'd
/// memory, so the resident-set high-water mark is what a training step really used, native and managed together.
/// </summary>
internal static class ProcessMemory
{
    public static bool IsSupported => File.Exists("/proc/self/clear_refs") && File.Exists("/proc/self/status");

    /// <summary>Returns freed heap pages to the kernel and resets VmHWM to the current VmRSS ("5" to clear_refs, Linux ≥ 4.0).</summary>
    public static long ResetPeakAndReadResident()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        MallocTrim(0);
        File.WriteAllText("/proc/self/clear_refs", "5");
        return ReadKiloBytes("VmRSS") * 1024;
    }

    public static long PeakResident() => ReadKiloBytes("VmHWM") * 1024;

    private static long ReadKiloBytes(string field)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0]);
    }

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);
}

/// <summary>A theory that skips visibly where /proc/self/clear_refs (Linux) is unavailable.</summary>
public sealed class ProcessMemoryTheoryAttribute : TheoryAttribute
{
    public ProcessMemoryTheoryAttribute()
    {
        if (!ProcessMemory.IsSupported) Skip = "needs Linux /proc/self/status and /proc/self/clear_refs to measure peak memory";
    }
}
