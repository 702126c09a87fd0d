using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// OLMo 3 (Olmo3ForCausalLM) against transformers' definitions (huggingface/transformers
/// src/transformers/models/olmo3/modular_olmo3.py @02e8340b: OLMo 2's layers with sliding-window attention per
/// layer_types; the sliding layers' unscaled RoPE as in its transformers 4.57 form). The checkpoints under
/// Fixtures/olmo3_sliding, olmo3_sliding_linear and olmo3_sliding_yarn and their EXPECTED.json come from Fixtures/make_olmo3_reference.py:
/// that model written out in plain PyTorch (float64 on float32 weights), with a window of 4 that both prompts cross.
/// </summary>
public class Olmo3Tests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    [Theory]
    [InlineData("olmo3_sliding")]
    [InlineData("olmo3_sliding_linear")]
    [InlineData("olmo3_sliding_yarn")]
    public void LogitsMatchTheReferenceWithin1e5(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        Assert.IsType<Olmo3ForCausalLM>(model);
        TransformersExpected.AssertLastPositionLogits(model, Fixture(name), name, tolerance: 1e-5);
    }

    [Theory]
    [InlineData("olmo3_sliding")]
    [InlineData("olmo3_sliding_linear")]
    [InlineData("olmo3_sliding_yarn")]
    public void GreedyIdsMatchTheReferenceOnTheFastAndGeneralPaths(string name)
    {
        using var model = TransformersExpected.LoadForComparison(Fixture(name));
        TransformersExpected.AssertGreedyIdsOnTheFastAndGeneralPaths(model, Fixture(name));
    }

    /// <summary>
    /// Every cached step gives the reference's logits with the decode shortcuts on and off, past the window of 4: the
    /// sliding layers' cache serves only the last 4 keys; with linear rope_scaling, the full layers rotate scaled and the
    /// sliding ones unscaled (a model rotating every layer alike misses these logits by far more than the tolerance).
    /// </summary>
    [Theory]
    [InlineData("olmo3_sliding")]
    [InlineData("olmo3_sliding_linear")]
    [InlineData("olmo3_sliding_yarn")]
    public void EveryCachedDecodeStepMatchesTheReference(string name)
    {
        var folder = Fixture(name);
        using var model = TransformersExpected.LoadForComparison(folder);
        Assert.Equal(4, model.Config.SlidingWindow);
        TransformersExpected.AssertEveryCachedDecodeStep(model, folder, name, tolerance: 2e-5);
    }

    /// <summary>
    /// Olmo3Config: Olmo2Config's defaults, plus sliding_window 4096 and layer_types sliding except every fourth layer
    /// (Olmo3Config.__post_init__). A null sliding_window is accepted only when no layer slides: transformers' Olmo3Model
    /// always builds the sliding mask, which raises without a window (masking_utils.create_sliding_window_causal_mask).
    /// </summary>
    [Fact]
    public void MissingFieldsGetOlmo3ConfigDefaults()
    {
        var config = ModelConfig.FromJson(new JsonObject { ["model_type"] = "olmo3", ["num_hidden_layers"] = 8 });
        Assert.Equal(("Olmo3ForCausalLM", "olmo3"), (config.Architecture, config.ModelType));
        Assert.Equal((50304, 4096, 11008, 32, 128, 1e-5, 10000.0), (config.VocabSize, config.HiddenSize, config.IntermediateSize,
            config.NumHeads, config.HeadDim, config.NormEps, config.RopeTheta));
        Assert.Equal(4096, config.SlidingWindow);
        Assert.Equal([4096, 4096, 4096, null, 4096, 4096, 4096, null], Enumerable.Range(0, 8).Select(config.SlidingWindowOf));
        Assert.Equal([50279], config.EosTokenIds);
        var refused = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            new JsonObject { ["model_type"] = "olmo3", ["num_hidden_layers"] = 4, ["sliding_window"] = null }, "olmo3/config.json"));
        Assert.StartsWith("olmo3/config.json: field 'sliding_window' is null but layer_types has sliding_attention layers", refused.Message);
        var unwindowed = ModelConfig.FromJson(new JsonObject
        {
            ["model_type"] = "olmo3", ["num_hidden_layers"] = 2, ["sliding_window"] = null,
            ["layer_types"] = new JsonArray("full_attention", "full_attention"),
        });
        Assert.All(Enumerable.Range(0, 2), i => Assert.Null(unwindowed.SlidingWindowOf(i)));
    }

    /// <summary>
    /// Only the sliding layers of a model with a rope_scaling rotate apart (unscaled): without scaling every layer shares
    /// the config's RoPE, and OLMo 2 never rotates apart.
    /// </summary>
    [Fact]
    public void OnlySlidingLayersUnderRopeScalingRotateUnscaled()
    {
        bool[] Local(string fixture)
        {
            using var model = (Olmo3ForCausalLM)PretrainedModel.Load(Fixture(fixture), ScalarType.Float32);
            return model.model.layers.Select(l => l.UsesLocalRope).ToArray();
        }
        Assert.Equal([false, true, true, false], Local("olmo3_sliding_linear"));
        Assert.Equal([false, false, false, false], Local("olmo3_sliding"));
        Assert.Contains("layer_types has 3 entries for num_hidden_layers = 4", Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(
            new JsonObject { ["model_type"] = "olmo3", ["num_hidden_layers"] = 4, ["layer_types"] = new JsonArray("full_attention", "full_attention", "full_attention") })).Message);
    }

    /// <summary>
    /// transformers 5's rope_parameters keyed by layer type: the full layers take full_attention's theta and scaling, the
    /// sliding layers sliding_attention's theta, unscaled (rotating apart even without scaling, since their base differs);
    /// a scaled sliding_attention section is refused by name.
    /// </summary>
    [Fact]
    public void RopeParametersKeyedByLayerTypeGiveTheSlidingLayersTheirOwnBase()
    {
        JsonObject Config(JsonObject sliding) => new()
        {
            ["model_type"] = "olmo3", ["num_hidden_layers"] = 4, ["hidden_size"] = 32, ["num_attention_heads"] = 2, ["intermediate_size"] = 32,
            ["vocab_size"] = 64, ["sliding_window"] = 4,
            ["rope_parameters"] = new JsonObject
            {
                ["full_attention"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 500000.0 }, ["sliding_attention"] = sliding,
            },
        };
        var config = ModelConfig.FromJson(Config(new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 10000.0 }));
        Assert.Equal((500000.0, 10000.0), (config.RopeTheta, config.RopeLocalBaseFreq));
        using (var model = (Olmo3ForCausalLM)ModelFactory.Create(config))
            Assert.Equal([true, true, true, false], model.model.layers.Select(l => l.UsesLocalRope));
        var refused = Assert.Throws<NotSupportedException>(() => ModelConfig.FromJson(
            Config(new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0, ["rope_theta"] = 10000.0 }), "olmo3/config.json"));
        Assert.StartsWith("olmo3/config.json: rope_parameters.sliding_attention.rope_type 'linear' is not supported", refused.Message);
    }

    /// <summary>
    /// rope_parameters keyed by layer type with only a full_attention section: the full layers take it (a yarn section
    /// is accepted), and the sliding layers do not borrow it — they keep the config's theta, unscaled, and still rotate
    /// apart from the scaled full layers.
    /// </summary>
    [Fact]
    public void AFullAttentionOnlyRopeSectionIsNotLentToTheSlidingLayers()
    {
        ModelConfig Read(JsonObject full) => ModelConfig.FromJson(new JsonObject
        {
            ["model_type"] = "olmo3", ["num_hidden_layers"] = 4, ["hidden_size"] = 32, ["num_attention_heads"] = 2, ["intermediate_size"] = 32,
            ["vocab_size"] = 64, ["sliding_window"] = 4, ["rope_parameters"] = new JsonObject { ["full_attention"] = full },
        }, "olmo3/config.json");
        var yarn = Read(new JsonObject { ["rope_type"] = "yarn", ["factor"] = 2.0, ["rope_theta"] = 500000.0 });
        Assert.Equal(("yarn", 500000.0, (double?)null), (yarn.RopeScaling?.Type, yarn.RopeTheta, yarn.RopeLocalBaseFreq));
        using (var model = (Olmo3ForCausalLM)ModelFactory.Create(yarn))
            Assert.Equal([true, true, true, false], model.model.layers.Select(l => l.UsesLocalRope));
        var plain = Read(new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 500000.0 });
        Assert.Equal((500000.0, (double?)null), (plain.RopeTheta, plain.RopeLocalBaseFreq));
        using (var model = (Olmo3ForCausalLM)ModelFactory.Create(plain))
            Assert.All(model.model.layers, l => Assert.False(l.UsesLocalRope));
    }

    /// <summary>
    /// The sliding layers' unscaled RoPE follows layer_types (transformers 4.57's rotary_embs[attention_type]), even when
    /// a layer's window would not be read: every sliding_attention layer rotates apart under a scaling.
    /// </summary>
    [Fact]
    public void TheUnscaledRopeFollowsLayerTypes()
    {
        var config = ModelConfig.FromJson(new JsonObject
        {
            ["model_type"] = "olmo3", ["num_hidden_layers"] = 4, ["hidden_size"] = 32, ["num_attention_heads"] = 2, ["intermediate_size"] = 32,
            ["vocab_size"] = 64, ["sliding_window"] = 4, ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 },
            ["layer_types"] = new JsonArray("sliding_attention", "full_attention", "full_attention", "sliding_attention"),
        }) with { SlidingWindow = null };
        using var model = (Olmo3ForCausalLM)ModelFactory.Create(config);
        Assert.Equal([true, false, false, true], model.model.layers.Select(l => l.UsesLocalRope));
    }

    /// <summary>OLMo 3 is absent from PEFT's tables (huggingface/peft@5d602fdb); it gets OLMo 2's Llama-style defaults.</summary>
    [Fact]
    public void DefaultTargetsAreOlmo2s()
    {
        Assert.Equal(LoraConfig.DefaultTargetModules("olmo2"), LoraConfig.DefaultTargetModules("olmo3"));
        Assert.Equal(SharpTune.Peft.IA3.IA3Config.DefaultTargetModules("olmo2"), SharpTune.Peft.IA3.IA3Config.DefaultTargetModules("olmo3"));
    }
}
