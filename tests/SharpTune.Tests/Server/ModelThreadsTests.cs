using SharpTune.Server.Engine;
using TorchSharp;

namespace SharpTune.Tests.Server;

public sealed class ModelThreadsTests
{
    [Fact]
    public void TheModelThreadsCountIsItsOwnAndTheProcessDefaultStays()
    {
        var before = torch.get_num_threads();
        int onModelThread = 0, onLaterThread = 0;
        var model = new Thread(() =>
        {
            ModelThreads.Apply(1);
            onModelThread = torch.get_num_threads();
        });
        model.Start();
        model.Join();
        // A thread that first uses libtorch afterwards starts from the process default, not from the model thread's count.
        var later = new Thread(() => onLaterThread = torch.get_num_threads());
        later.Start();
        later.Join();
        Assert.Equal(1, onModelThread);
        Assert.Equal(before, torch.get_num_threads());
        Assert.Equal(before, onLaterThread);
    }
}
