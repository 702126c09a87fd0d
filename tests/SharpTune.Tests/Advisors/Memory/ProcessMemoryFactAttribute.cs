using SharpTune.Runtime;

namespace SharpTune.Tests.Advisors.Memory;

/// <summary>A fact that skips visibly where /proc/self/clear_refs (Linux) is unavailable.</summary>
public sealed class ProcessMemoryFactAttribute : FactAttribute
{
    public ProcessMemoryFactAttribute()
    {
        if (!ResidentMemory.IsSupported) Skip = "needs Linux /proc/self/status and /proc/self/clear_refs to measure peak memory";
    }
}
