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

        // QLoRA on the cached base: the same held-out accuracy from an NF4 base, in its own run folder.
        var second = QuickstartJob.Run(options with { Quantize = "nf4" });
        Assert.True(second.BaseWasCached);
        Assert.Equal(Path.Combine(dir.Path, "run-nf4"), second.RunDirectory);
        Assert.True(second.After.Accuracy >= 0.9, $"fine-tuned accuracy on an NF4 base {second.After.Accuracy}");
        Assert.True(File.Exists(Path.Combine(first.AdapterDirectory, "adapter_config.json")));   // the unquantized run is kept
    }
}
