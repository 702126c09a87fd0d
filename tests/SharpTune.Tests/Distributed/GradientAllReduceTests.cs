using SharpTune.Distributed;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Distributed;

/// <summary>
/// The bucketed gradient sum on ranks that are threads of this process (<see cref="InProcessGroup"/>), against sums worked
/// by hand and PyTorch DDP's rule for parameters without a gradient (torch/nn/parallel/distributed.py: a parameter no
/// rank used keeps its grad untouched, so the optimizer skips it).
/// </summary>
public class GradientAllReduceTests
{
    [Fact]
    public void GradientsAreSummedAndAParameterNoRankUsedKeepsNoGradient()
    {
        var groups = InProcessGroup.Create(2);
        var results = new (float[]? Used, float[]? UsedByRankOneOnly, float[]? Unused)[2];
        var ranks = Enumerable.Range(0, 2).Select(rank => Task.Run(() =>
        {
            using var used = new Parameter(zeros(3));
            using var usedByRankOneOnly = new Parameter(zeros(2));
            using var unused = new Parameter(zeros(4));   // e.g. a LoHa layer module dropout skipped on every rank
            used.grad = tensor(new[] { 1f, 2f, 3f }) * (rank + 1);
            if (rank == 1) usedByRankOneOnly.grad = tensor(new[] { 5f, 7f });
            GradientAllReduce.Sum([("used", used), ("once", usedByRankOneOnly), ("unused", unused)], groups[rank]);
            results[rank] = (Values(used.grad), Values(usedByRankOneOnly.grad), Values(unused.grad));
        })).ToArray();
        Assert.True(Task.WaitAll(ranks, TimeSpan.FromMinutes(1)), "the ranks did not finish");
        foreach (var (used, once, unused) in results)
        {
            Assert.Equal([3f, 6f, 9f], used);
            Assert.Equal([5f, 7f], once);   // as DDP: rank 0 takes the sum though it had no gradient of its own
            Assert.Null(unused);
        }
    }

    private static float[]? Values(Tensor? grad)
    {
        if (grad is null) return null;
        using (grad) return grad.data<float>().ToArray();
    }
}
