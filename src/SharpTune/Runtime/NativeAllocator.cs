using System.Runtime.InteropServices;
using System.Text;

namespace SharpTune.Runtime;

/// <summary>
/// Which C allocator serves libtorch's tensors, and a restart of the command-line tool under jemalloc where glibc would
/// waste memory. glibc before 2.38 never hands a freed block back for a same-sized aligned request (glibc bug 14581);
/// libtorch allocates every tensor 64-byte aligned, so a training step's temporaries keep landing on fresh heap and its
/// resident peak reaches 1.6-1.9× its tensors. jemalloc reuses them; with its purging off (no page faults from memory
/// handed back and taken again, what <see cref="AllocatorTuning"/> does for glibc) M's LoRA step measured 0.75× glibc's
/// peak at 6 % more tokens/s (docs/advisors.md). An allocator can only be chosen before a process starts (LD_PRELOAD),
/// hence the restart: the same process id, arguments and open files, a new image.
/// </summary>
internal static partial class NativeAllocator
{
    /// <summary>jemalloc's settings for the restart: never purge, so freed pages are reused without page faults.</summary>
    public const string JemallocSettings = "dirty_decay_ms:-1,muzzy_decay_ms:-1";

    private const string Library = "libjemalloc.so.2";

    private static readonly string[] LibraryFolders =
    [
        "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
    ];

    /// <summary>"jemalloc" when this process allocates through it, "glibc" on other glibc systems, else "system".</summary>
    public static string Current
    {
        get
        {
            if (IsJemallocLoaded()) return "jemalloc";
            return AllocatorTuning.GlibcVersion() is null ? "system" : "glibc";
        }
    }

    /// <summary>True when libjemalloc is mapped into this process (preloaded, so it serves every malloc).</summary>
    public static bool IsJemallocLoaded() => jemallocLoaded.Value;

    // An allocator is preloaded when the process starts or not at all, so /proc/self/maps is read once.
    private static readonly Lazy<bool> jemallocLoaded = new(() =>
        OperatingSystem.IsLinux() && File.Exists("/proc/self/maps") &&
        File.ReadLines("/proc/self/maps").Any(line => line.Contains("libjemalloc", StringComparison.Ordinal)));

    /// <summary>
    /// Hands every jemalloc arena's unused pages back to the kernel (mallctl "arena.4096.purge", 4096 being
    /// MALLCTL_ARENAS_ALL): with purging off, memory freed by one phase stays resident until this is asked.
    /// </summary>
    public static unsafe bool PurgeJemalloc()
    {
        if (!NativeLibrary.TryLoad(Library, out var handle) || !NativeLibrary.TryGetExport(handle, "mallctl", out var address)) return false;
        var mallctl = (delegate* unmanaged<byte*, void*, nuint*, void*, nuint, int>)address;
        var name = "arena.4096.purge\0"u8;
        fixed (byte* text = name) return mallctl(text, null, null, null, 0) == 0;
    }

    /// <summary>
    /// Replaces this process with itself run under jemalloc when glibc is older than 2.38 and jemalloc is installed, and
    /// returns only where it does not (not Linux, glibc ≥ 2.38, no jemalloc, already restarted, SHARPTUNE_JEMALLOC=0,
    /// or the exec failed). SHARPTUNE_JEMALLOC=PATH names the library file. Call it first thing in Main, before any
    /// output: the new image starts from the beginning.
    /// </summary>
    public static void RestartUnderJemallocWhereGlibcWastesMemory()
    {
        var choice = Environment.GetEnvironmentVariable("SHARPTUNE_JEMALLOC");
        if (choice == "0" || !OperatingSystem.IsLinux()) return;
        if (AllocatorTuning.GlibcVersion() is not { } glibc || glibc >= new Version(2, 38)) return;
        var preload = Environment.GetEnvironmentVariable("LD_PRELOAD") ?? "";
        if (preload.Contains("jemalloc", StringComparison.Ordinal) || IsJemallocLoaded()) return;   // restarted already, or the user chose
        var library = string.IsNullOrEmpty(choice) || choice == "1" ? InstalledJemalloc() : File.Exists(choice) ? choice : null;
        if (library is null) return;
        if (ReadArguments() is not { Length: > 0 } arguments) return;

        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "", StringComparer.Ordinal);
        environment["LD_PRELOAD"] = preload.Length == 0 ? library : $"{library}:{preload}";
        environment.TryAdd("MALLOC_CONF", JemallocSettings);
        Execute("/proc/self/exe", arguments, environment.Select(e => $"{e.Key}={e.Value}").ToArray());
    }

    /// <summary>The installed libjemalloc.so.2 in the usual library folders, or null.</summary>
    public static string? InstalledJemalloc() =>
        LibraryFolders.Select(folder => Path.Combine(folder, Library)).FirstOrDefault(File.Exists);

    /// <summary>The process's own argument vector, as the kernel holds it (the host and the entry assembly included).</summary>
    private static string[]? ReadArguments()
    {
        try
        {
            var raw = File.ReadAllBytes("/proc/self/cmdline");
            var text = Encoding.UTF8.GetString(raw);
            return text.TrimEnd('\0').Split('\0');
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static void Execute(string path, string[] arguments, string[] environment)
    {
        var argv = ToNative(arguments);
        var envp = ToNative(environment);
        try
        {
            Execve(path, argv, envp);   // returns only on failure; the process then goes on under glibc
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
        }
        finally
        {
            Free(argv);
            Free(envp);
        }
    }

    private static nint[] ToNative(string[] values)
    {
        var pointers = new nint[values.Length + 1];
        for (var i = 0; i < values.Length; i++) pointers[i] = Marshal.StringToCoTaskMemUTF8(values[i]);
        return pointers;
    }

    private static void Free(nint[] pointers)
    {
        foreach (var pointer in pointers)
            if (pointer != 0) Marshal.FreeCoTaskMem(pointer);
    }

    [LibraryImport("libc", EntryPoint = "execve", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Execve(string path, nint[] argv, nint[] envp);
}
