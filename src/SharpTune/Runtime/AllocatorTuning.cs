using System.Runtime.InteropServices;

namespace SharpTune.Runtime;

/// <summary>
/// glibc's malloc returns large freed blocks to the kernel (mmap/munmap above 32 MB, heap trimming above 128 KB) and
/// maps them again on the next training step: with libtorch allocating through it, that meant constant page faults
/// (DESIGN.md §5 measured a 2× slowdown for a PyTorch trainer). Keeping freed memory for reuse is what jemalloc-style
/// allocators do; this sets the equivalent glibc options at start-up (what MALLOC_MMAP_MAX_=0 and
/// MALLOC_TRIM_THRESHOLD_ would do, which only work when set before the process starts). Set SHARPTUNE_MALLOC_TUNING=0
/// to keep glibc's defaults. Elsewhere (Windows, macOS, musl) this does nothing.
/// </summary>
internal static partial class AllocatorTuning
{
    private const int M_TRIM_THRESHOLD = -1;
    private const int M_MMAP_MAX = -4;
    private const int M_MMAP_THRESHOLD = -3;

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int parameter, int value);

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    /// <summary>
    /// Hands the C heap's free pages back to the kernel now (glibc's malloc_trim: free chunks anywhere in the heap, not
    /// only at its top), for the end of a phase whose temporaries will not be needed again soon, such as loading a
    /// model: with trimming off (<see cref="Apply"/>), the holes they left would otherwise stay resident for the life of
    /// the process. Under jemalloc (<see cref="NativeAllocator"/>) its arenas are purged instead. Returns false where
    /// neither is the allocator.
    /// </summary>
    public static bool ReleaseFreeMemory()
    {
        if (!OperatingSystem.IsLinux()) return false;
        if (NativeAllocator.IsJemallocLoaded()) return NativeAllocator.PurgeJemalloc();
        try
        {
            MallocTrim(0);
            return true;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "gnu_get_libc_version")]
    private static partial nint GnuGetLibcVersion();

    /// <summary>The running glibc's version, or null where the C library is not glibc.</summary>
    public static Version? GlibcVersion()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            return Version.TryParse(Marshal.PtrToStringAnsi(GnuGetLibcVersion()), out var version) ? version : null;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// Until disposed, glibc serves every block of <paramref name="threshold"/> bytes or more from its own mapping and
    /// returns it to the kernel on free, so this process's resident peak follows its live tensors: for measuring the
    /// peak of one piece of work inside a long-lived process (slow: each large tensor maps and unmaps its pages). On
    /// dispose, blocks are kept for reuse again when <see cref="Apply"/> had set that. Null where the C library is not glibc.
    /// </summary>
    internal static IDisposable? MapLargeBlocks(int threshold = 256 * 1024)
    {
        if (GlibcVersion() is null || NativeAllocator.IsJemallocLoaded()) return null;
        var keptForReuse = Environment.GetEnvironmentVariable("SHARPTUNE_MALLOC_TUNING") != "0";
        Mallopt(M_MMAP_THRESHOLD, threshold);
        Mallopt(M_MMAP_MAX, 1 << 16);
        MallocTrim(0);
        return new RestoreOnDispose(() =>
        {
            if (keptForReuse) Mallopt(M_MMAP_MAX, 0);
        });
    }

    public static bool Apply()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("SHARPTUNE_MALLOC_TUNING") == "0") return false;
        try
        {
            return Mallopt(M_MMAP_MAX, 0) == 1 && Mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return false;   // not glibc
        }
    }
}
