using SharpTune.Distributed;
using static TorchSharp.torch;

namespace SharpTune.Tests.Distributed;

/// <summary>
/// Ranks that are threads of this process: each collective waits for every rank, then gives each the element-wise sum
/// (or the root's values), as MPI would. For unit tests of the collectives' callers without mpirun.
/// </summary>
internal sealed class InProcessGroup : IProcessGroup
{
    private sealed class Shared(int size)
    {
        public readonly Barrier Barrier = new(size);
        public readonly double[]?[] Contributions = new double[size][];
    }

    private readonly Shared shared;

    private InProcessGroup(Shared shared, int rank) => (this.shared, Rank) = (shared, rank);

    /// <summary>One group object per rank, all of the same run.</summary>
    public static IProcessGroup[] Create(int size)
    {
        var shared = new Shared(size);
        return [.. Enumerable.Range(0, size).Select(rank => new InProcessGroup(shared, rank))];
    }

    public int Rank { get; }

    public int Size => shared.Contributions.Length;

    public void AllReduceSum(Span<double> values)
    {
        var length = values.Length;
        var summed = Exchange(values.ToArray(), all => [.. Enumerable.Range(0, length).Select(i => all.Sum(c => c![i]))]);
        summed.CopyTo(values);
    }

    public void AllReduceSum(Tensor tensor)
    {
        var values = tensor.data<float>().Select(v => (double)v).ToArray();
        AllReduceSum(values);
        tensor.data<float>().CopyFrom([.. values.Select(v => (float)v)], 0);
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        var values = tensor.data<float>().Select(v => (double)v).ToArray();
        var rootValues = Exchange(values, all => all[root]!);
        tensor.data<float>().CopyFrom([.. rootValues.Select(v => (float)v)], 0);
    }

    private double[] Exchange(double[] mine, Func<double[]?[], double[]> combine)
    {
        shared.Contributions[Rank] = mine;
        shared.Barrier.SignalAndWait();
        var result = combine(shared.Contributions);
        shared.Barrier.SignalAndWait();   // every rank has read the contributions before any writes the next ones
        return result;
    }
}
