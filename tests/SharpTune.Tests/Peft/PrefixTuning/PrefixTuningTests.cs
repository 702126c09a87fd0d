using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.PrefixTuning;
using SharpTune.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.PrefixTuning;

public class PrefixTuningTests
{
    private static PrefixTuningAdapter Create(int n = 4, bool projection = false) =>
        new(new PrefixTuningConfig { NumVirtualTokens = n, PrefixProjection = projection, EncoderHiddenSize = projection ? 24 : null });

    [Theory]
    [InlineData("llama", false)]
    [InlineData("gpt2", true)]
    public void OneStepChangesOnlyThePrefixParameters(string kind, bool projection) =>
        PeftMethodChecks.OnlyAdapterParametersChange(kind, () => Create(projection: projection));

    [Theory]
    [InlineData("llama", false)]
    [InlineData("llama", true)]
    [InlineData("gpt2", false)]
    public void SaveLoadRoundTripGivesIdenticalLogits(string kind, bool projection)
    {
        var config = PeftMethodChecks.SaveLoadRoundTrip(kind, () => Create(projection: projection));
        Assert.Equal(projection, config["prefix_projection"]!.GetValue<bool>());
    }

    [Theory]
    [InlineData("llama", false)]
    [InlineData("gpt2", true)]
    public void LossFallsOnATinyMemorisationTask(string kind, bool projection) =>
        PeftMethodChecks.LossFalls(kind, () => Create(8, projection), lr: projection ? 3e-2 : 0.1, steps: 40, attentionScale: 20);

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    [InlineData("qwen3")]
    public void GenerationGivesTheSameTokensWithAndWithoutCacheAndBatched(string kind)
    {
        using var model = TestModels.Create(kind);
        Create(5).Inject(model);
        PeftMethodChecks.GenerationAgreesAcrossCacheAndBatching(model);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void PrefixesActAsAPastOfPTokensLaidOutAsPeftDoes(string kind)
    {
        // Reference: Hugging Face's reading of PEFT's table — view (P, 2L, kv_heads, head_dim), slot 2l = layer l's keys,
        // 2l+1 its values — fed to the plain model as a KV cache already holding P positions, real tokens at P..P+T-1.
        using var model = TestModels.Create(kind);
        var adapter = Create(3);
        adapter.Inject(model);
        using var ids = LoraTestSupport.Ids();
        using var actual = LoraTestSupport.Logits(model, ids);

        adapter.Enabled = false;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (p, kv, hd, layers) = (3, model.Config.NumKeyValueHeads, model.Config.HeadDim, model.Config.NumLayers);
        var table = adapter.Encoder!.Prefixes().data<float>().ToArray();                // (P, 2L·kv·hd) row-major
        using var cache = new KvCache(model.Config, 2, p + 8, ScalarType.Float32, model.Device);
        for (var l = 0; l < layers; l++)
        {
            var keys = new float[2 * kv * p * hd];
            var values = new float[2 * kv * p * hd];
            for (var b = 0; b < 2; b++)
                for (var h = 0; h < kv; h++)
                    for (var t = 0; t < p; t++)
                        for (var d = 0; d < hd; d++)
                        {
                            var at = ((b * kv + h) * p + t) * hd + d;
                            keys[at] = table[t * 2 * layers * kv * hd + ((2 * l) * kv + h) * hd + d];
                            values[at] = table[t * 2 * layers * kv * hd + ((2 * l + 1) * kv + h) * hd + d];
                        }
            cache.Update(l, tensor(keys, [2, kv, p, hd]), tensor(values, [2, kv, p, hd]));
        }
        cache.Advance(p);
        var positions = arange(p, p + 8, dtype: ScalarType.Int64).unsqueeze(0).expand(2, 8);
        var expected = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(ids), new ForwardContext { PositionIds = positions, Cache = cache }));
        Assert.True(actual.allclose(expected, rtol: 0, atol: 1e-5), $"differs by {LoraTestSupport.MaxDifference(actual, expected)}");
    }

    [Theory]
    [InlineData("llama", 2, 128)]   // GQA: PEFT stores the 2 key/value heads, token_dim = 2 × 16
    [InlineData("gpt2", 4, 256)]
    public void SavedLayoutIsPeftsPrefixTuningLayout(string kind, int kvHeads, int width)
    {
        using var model = TestModels.Create(kind);
        var adapter = Create(5, projection: true);
        adapter.Inject(model);
        var (config, shapes) = PeftMethodChecks.SavedLayout(adapter);
        Assert.Equal(new Dictionary<string, long[]> { ["prompt_embeddings"] = [5, width] }, shapes);   // projected prefixes
        Assert.Equal("PREFIX_TUNING", config["peft_type"]!.GetValue<string>());
        Assert.Equal(5, config["num_virtual_tokens"]!.GetValue<int>());
        Assert.Equal(kvHeads, config["num_attention_heads"]!.GetValue<int>());
        Assert.Equal(kvHeads * 16, config["token_dim"]!.GetValue<int>());
        Assert.Equal(2, config["num_layers"]!.GetValue<int>());
        Assert.Equal(1, config["num_transformer_submodules"]!.GetValue<int>());
        Assert.Equal(24, config["encoder_hidden_size"]!.GetValue<int>());
        Assert.True(config["prefix_projection"]!.GetValue<bool>());
    }

    [Fact]
    public void UnloadRestoresTheBaseModelAndMergeIsRefused()
    {
        using var model = TestModels.Create("gpt2");
        var adapter = Create(projection: true);
        adapter.Inject(model);
        Assert.Throws<NotSupportedException>(adapter.MergeAndUnload);
        adapter.Unload();
        Assert.Null(model.ForwardAdapter);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));
        PeftMethodChecks.OutputsEqualBase("gpt2", model);
    }
}
