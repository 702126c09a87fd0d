using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary><see cref="KvCache.Truncate"/>: what is kept decodes as if the forgotten positions had never been written.</summary>
public sealed class KvCacheTruncateTests
{
    /// <summary>Also for sliding windows (3) shorter than the sequence, and Gemma 2's soft-capped, windowed layers.</summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("mistral-window")]
    [InlineData("gemma2")]
    public void AfterTruncationTheCacheContinuesAsAFreshOne(string kind)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        using var inference = inference_mode();
        long[] kept = [3, 17, 42, 5];
        long[] rejected = [60, 61, 62];
        long[] next = [9, 11];

        using var cache = new KvCache(model.Config, 1, 16, model.WeightDtype, CPU);
        Run(model, cache, [.. kept, .. rejected], 0);
        Assert.Equal(7, cache.Length);
        cache.Truncate(kept.Length);
        Assert.Equal(4, cache.Length);
        var afterTruncation = Run(model, cache, next, kept.Length);

        using var fresh = new KvCache(model.Config, 1, 16, model.WeightDtype, CPU);
        Run(model, fresh, kept, 0);
        var reference = Run(model, fresh, next, kept.Length);
        Assert.True(afterTruncation.allclose(reference, 1e-5, 1e-5));
        // And equal to one pass without a cache over the whole sequence.
        var whole = Run(model, null, [.. kept, .. next], 0).narrow(1, kept.Length, next.Length);
        Assert.True(afterTruncation.allclose(whole, 1e-4, 1e-4));
    }

    [Fact]
    public void TruncationOutsideWhatIsStoredIsRefused()
    {
        var config = ModelConfig.FromJson(TestModels.LlamaConfigJson());
        using var cache = new KvCache(config, 1, 8, ScalarType.Float32, CPU);
        cache.Advance(3);
        cache.Truncate(3);
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(-1));
        cache.Truncate(0);
        Assert.Equal(0, cache.Length);
    }

    private static Tensor Run(CausalLanguageModel model, KvCache? cache, long[] ids, int start)
    {
        var positions = arange(start, start + ids.Length, dtype: ScalarType.Int64).view(1, -1);
        var ctx = new ForwardContext { PositionIds = positions, Cache = cache };
        return model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(tensor(ids).view(1, -1)), ctx));
    }
}
