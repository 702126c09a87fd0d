using SharpTune.Runtime;

namespace SharpTune.Tests.Advisors.Memory;

/// <summary>A theory that skips visibly where /proc/self/clear_refs (Linux) is unavailable.</summary>
public sealed class ProcessMemoryTheoryAttribute : TheoryAttribute
{
    public ProcessMemoryTheoryAttribute()
    {
        if (!ResidentMemory.IsSupported) Skip = "needs Linux /proc/self/status and /proc/self/clear_refs to measure peak memory";
    }
}
