using SharpTune.Runtime;
using TorchSharp;

namespace SharpTune.Tests.Runtime;

public class TorchRuntimeTests
{
    [Fact]
    public void NativeLibraryLoadsAndComputes()
    {
        TorchRuntime.EnsureInitialised();
        using var a = torch.arange(1, 5, dtype: torch.float32);   // 1 2 3 4
        using var dot = a.dot(a);
        Assert.Equal(30f, dot.item<float>());
    }
}
