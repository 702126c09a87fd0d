using SharpTune.Quickstart;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Quickstart;

public class QuickstartJobTests
{
    [Fact]
    public void QuickstartTurnsAChanceBaseIntoAnAccurateFineTunedModelAndCachesTheBase()
    {
        using var dir = new TempDir();
        var options = new QuickstartOptions { Output = dir.Path };
        var first = QuickstartJob.Run(options);
        Assert.False(first.BaseWasCached);
        Assert.True(first.Before.Accuracy < 0.5, $"base accuracy {first.Before.Accuracy}");
        Assert.True(first.After.Accuracy >= 0.9, $"fine-tuned accuracy {first.After.Accuracy}");
        Assert.True(first.After.Perplexity < first.Before.Perplexity / 5);
        Assert.True(File.Exists(Path.Combine(first.BaseDirectory, "tokenizer.json")));
        Assert.True(File.Exists(Path.Combine(first.BaseDirectory, "config.json")));
        Assert.True(File.Exists(Path.Combine(first.AdapterDirectory, "adapter_config.json")));
        Assert.True(File.Exists(Path.Combine(first.RunDirectory, "loss.png")));

        var second = QuickstartJob.Run(options with { FineTuneSteps = 20 });
        Assert.True(second.BaseWasCached);
    }
}
