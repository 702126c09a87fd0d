using System.Reflection;
using System.Runtime.InteropServices;

namespace SharpTune.Distributed;

/// <summary>
/// The few MPI calls data-parallel training needs, over Open MPI's libmpi (Debian's <c>libopenmpi3</c>, soname
/// libmpi.so.40). Open MPI's handles are the addresses of exported objects (<c>&amp;ompi_mpi_comm_world</c>,
/// <c>&amp;ompi_mpi_float</c>, <c>&amp;ompi_mpi_op_sum</c>), resolved once at load. The library is opened with
/// RTLD_GLOBAL, as mpi4py does, so the components Open MPI loads at start-up find its symbols.
/// </summary>
internal static unsafe partial class OpenMpi
{
    private const string Library = "libmpi";
    private const int Success = 0;
    private const int RtldNow = 2, RtldGlobal = 0x100;
    private const int ThreadSerialized = 2;   // MPI_THREAD_SERIALIZED: any thread may call, one at a time

    private static readonly Lazy<nint> handle = new(Load);

    public static nint CommWorld => Export("ompi_mpi_comm_world");
    public static nint Float => Export("ompi_mpi_float");
    public static nint Double => Export("ompi_mpi_double");
    public static nint Byte => Export("ompi_mpi_byte");
    public static nint Sum => Export("ompi_mpi_op_sum");
    public static nint Max => Export("ompi_mpi_op_max");

    /// <summary>MPI_IN_PLACE in Open MPI.</summary>
    public static readonly nint InPlace = 1;

    /// <summary>Whether libmpi can be loaded here (Open MPI installed).</summary>
    public static bool IsAvailable
    {
        get
        {
            try { return handle.Value != 0; }
            catch (DllNotFoundException) { return false; }
        }
    }

    public static void Init()
    {
        _ = handle.Value;
        int initialized;
        Check(MPI_Initialized(&initialized), "MPI_Initialized");
        if (initialized != 0) return;
        int provided;
        Check(MPI_Init_thread(null, null, ThreadSerialized, &provided), "MPI_Init_thread");
        if (provided < ThreadSerialized)
            throw new InvalidOperationException($"this MPI provides thread level {provided}; SharpTune needs MPI_THREAD_SERIALIZED ({ThreadSerialized})");
    }

    public static int Rank()
    {
        int rank;
        Check(MPI_Comm_rank(CommWorld, &rank), "MPI_Comm_rank");
        return rank;
    }

    public static int Size()
    {
        int size;
        Check(MPI_Comm_size(CommWorld, &size), "MPI_Comm_size");
        return size;
    }

    public static void AllReduce(void* buffer, int count, nint datatype, nint op) =>
        Check(MPI_Allreduce((void*)InPlace, buffer, count, datatype, op, CommWorld), "MPI_Allreduce");

    public static void Broadcast(void* buffer, int count, nint datatype, int root) =>
        Check(MPI_Bcast(buffer, count, datatype, root, CommWorld), "MPI_Bcast");

    public static void Barrier() => Check(MPI_Barrier(CommWorld), "MPI_Barrier");

    public static void Abort(int code) => MPI_Abort(CommWorld, code);

    public static void FinalizeMpi()
    {
        int finalized;
        if (MPI_Finalized(&finalized) == Success && finalized == 0) MPI_Finalize();
    }

    private static void Check(int code, string call)
    {
        if (code != Success) throw new InvalidOperationException($"{call} failed with MPI error code {code}");
    }

    private static nint Export(string name) => NativeLibrary.GetExport(handle.Value, name);

    private static nint Load()
    {
        foreach (var name in new[] { "libmpi.so.40", "libmpi.so" })
        {
            var h = dlopen(name, RtldNow | RtldGlobal);
            if (h != 0)
            {
                if (!NativeLibrary.TryGetExport(h, "ompi_mpi_comm_world", out _))
                    throw new DllNotFoundException($"{name} is not Open MPI's libmpi (SharpTune's distributed training supports Open MPI)");
                NativeLibrary.SetDllImportResolver(typeof(OpenMpi).Assembly, Resolve);
                return h;
            }
        }
        throw new DllNotFoundException("Open MPI's libmpi.so.40 was not found; install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev)");
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path) => name == Library ? handle.Value : 0;

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint dlopen(string file, int mode);

    [LibraryImport(Library)] private static partial int MPI_Initialized(int* flag);
    [LibraryImport(Library)] private static partial int MPI_Finalized(int* flag);
    [LibraryImport(Library)] private static partial int MPI_Init_thread(int* argc, byte*** argv, int required, int* provided);
    [LibraryImport(Library)] private static partial int MPI_Finalize();
    [LibraryImport(Library)] private static partial int MPI_Comm_rank(nint comm, int* rank);
    [LibraryImport(Library)] private static partial int MPI_Comm_size(nint comm, int* size);
    [LibraryImport(Library)] private static partial int MPI_Allreduce(void* send, void* receive, int count, nint datatype, nint op, nint comm);
    [LibraryImport(Library)] private static partial int MPI_Bcast(void* buffer, int count, nint datatype, int root, nint comm);
    [LibraryImport(Library)] private static partial int MPI_Barrier(nint comm);
    [LibraryImport(Library)] private static partial int MPI_Abort(nint comm, int code);
}
