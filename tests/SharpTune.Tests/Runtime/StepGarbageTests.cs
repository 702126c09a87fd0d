using SharpTune.Runtime;

namespace SharpTune.Tests.Runtime;

public class StepGarbageTests
{
    /// <summary>Past the threshold of managed allocations the call collects; right after, with nothing new, it does not.</summary>
    [Fact]
    public void CollectsOnlyPastTheThreshold()
    {
        var sink = 0L;
        for (var i = 0; i < 2 * StepGarbage.Threshold / 1024; i++) sink += new byte[1000].Length;   // garbage past the threshold
        Assert.True(sink > StepGarbage.Threshold);
        var before = GC.CollectionCount(0);
        StepGarbage.CollectIfPastThreshold();
        var after = GC.CollectionCount(0);
        Assert.True(after > before, "the youngest generation was not collected past the threshold");
        StepGarbage.CollectIfPastThreshold();
        Assert.Equal(after, GC.CollectionCount(0));   // nothing allocated since: no second collection
    }
}
