using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Distributed;

/// <summary>
/// The processes (ranks) of one data-parallel training run. Every collective is called by every rank in the same order;
/// a rank that dies ends the whole run (mpirun aborts the job and names the rank), so no rank waits forever.
/// </summary>
internal interface IProcessGroup
{
    int Rank { get; }
    int Size { get; }

    /// <summary>Sums <paramref name="values"/> element-wise across ranks, in place.</summary>
    void AllReduceSum(Span<double> values);

    /// <summary>Sums a contiguous CPU float32 tensor element-wise across ranks, in place.</summary>
    void AllReduceSum(Tensor tensor);

    /// <summary>Overwrites a contiguous CPU tensor with rank <paramref name="root"/>'s values.</summary>
    void Broadcast(Tensor tensor, int root = 0);
}

/// <summary>The process group of this process: MPI when started by mpirun or srun, else a group of one.</summary>
internal static class ProcessGroups
{
    private static IProcessGroup? current;

    /// <summary>A group of one process: every collective is the identity.</summary>
    public static IProcessGroup Single { get; } = new SingleProcessGroup();

    /// <summary>The group training uses; <see cref="Single"/> unless <see cref="InitializeFromEnvironment"/> started MPI.</summary>
    public static IProcessGroup Current => current ?? Single;

    /// <summary>Whether this process was started by an MPI launcher (Open MPI's mpirun, or Slurm's srun with PMIx).</summary>
    public static bool LaunchedByMpi =>
        Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not null || Environment.GetEnvironmentVariable("PMIX_RANK") is not null;

    /// <summary>Starts MPI when this process was launched by mpirun/srun and returns the group (a group of one otherwise).</summary>
    public static IProcessGroup InitializeFromEnvironment()
    {
        if (current is not null) return current;
        if (!LaunchedByMpi) return Single;
        OpenMpi.Init();
        current = new MpiProcessGroup();
        return current;
    }

    /// <summary>Ends every rank of the run at once (mpirun reports which rank asked); a no-op without MPI.</summary>
    public static void Abort(int code)
    {
        if (current is MpiProcessGroup) OpenMpi.Abort(code);
    }

    /// <summary>Ends MPI if it was started (every rank calls this once, after training).</summary>
    public static void Shutdown()
    {
        if (current is MpiProcessGroup) OpenMpi.FinalizeMpi();
        current = null;
    }

    private sealed class SingleProcessGroup : IProcessGroup
    {
        public int Rank => 0;
        public int Size => 1;
        public void AllReduceSum(Span<double> values) { }
        public void AllReduceSum(Tensor tensor) { }
        public void Broadcast(Tensor tensor, int root = 0) { }
    }
}

/// <summary>The ranks of MPI_COMM_WORLD, through <see cref="OpenMpi"/>.</summary>
internal sealed unsafe class MpiProcessGroup : IProcessGroup
{
    public MpiProcessGroup()
    {
        Rank = OpenMpi.Rank();
        Size = OpenMpi.Size();
    }

    public int Rank { get; }
    public int Size { get; }

    public void AllReduceSum(Span<double> values)
    {
        fixed (double* p = values) OpenMpi.AllReduce(p, values.Length, OpenMpi.Double, OpenMpi.Sum);
    }

    public void AllReduceSum(Tensor tensor)
    {
        if (tensor.dtype != ScalarType.Float32 || tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
            throw new ArgumentException("the all-reduce takes contiguous CPU float32 tensors");
        var bytes = tensor.bytes;
        fixed (byte* p = bytes) OpenMpi.AllReduce(p, (int)tensor.numel(), OpenMpi.Float, OpenMpi.Sum);
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous())
            throw new ArgumentException("the broadcast takes contiguous CPU tensors");
        var bytes = tensor.bytes;
        // Sent as bytes in chunks below 2^31, so any dtype and size goes.
        for (long offset = 0; offset < bytes.Length; offset += int.MaxValue)
        {
            var count = (int)Math.Min(int.MaxValue, bytes.Length - offset);
            fixed (byte* p = bytes.Slice((int)offset, count)) OpenMpi.Broadcast(p, count, OpenMpi.Byte, root);
        }
    }
}
