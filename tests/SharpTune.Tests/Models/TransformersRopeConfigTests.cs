using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// RoPE settings as transformers 5 writes and reads them (<c>rope_parameters</c>, which holds rope_theta and, for Gemma 3,
/// one entry per layer type) and Phi-3's LongRoPE switch during cached decoding. The checkpoints under Fixtures/ are
/// tiny random-weight models in Hugging Face layout; their EXPECTED.json (last-position logits and 10 greedy ids, each
/// from a full re-run of prompt + tokens so far) come from a float64 port of transformers' eager forward (main branch:
/// configuration_llama.py @008e5743 with RotaryEmbeddingConfigMixin.standardize_rope_params, modeling_rope_utils'
/// _compute_yarn/_compute_linear/_compute_longrope_parameters, Gemma3TextConfig's per-layer-type rope_parameters,
/// Phi3ForCausalLM.prepare_inputs_for_generation), run with Debian's torch 1.13.1. The port reproduces
/// ../shared/models/reference-archs to 3e-6.
/// </summary>
public class TransformersRopeConfigTests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    private static TransformersExpected.Case[] Cases(string name) => TransformersExpected.Read(Fixture(name));

    /// <summary>
    /// llama_rope_parameters: {"rope_type": "yarn", "rope_theta": 1000, "factor": 4, "original_max_position_embeddings": 16}
    /// and no top-level rope_theta (read as the default 10000 and no scaling, logits were off by up to 1.2).
    /// gemma3_rope_parameters: full_attention {"rope_type": "linear", "factor": 8, "rope_theta": 1e6}, sliding_attention
    /// {"rope_type": "default", "rope_theta": 100}, no rope_theta / rope_local_base_freq keys (off by up to 1.1).
    /// </summary>
    [Theory]
    [InlineData("llama_rope_parameters")]
    [InlineData("gemma3_rope_parameters")]
    [InlineData("phi3_longrope_crossing")]
    public void LastPositionLogitsMatchTransformers(string name)
    {
        using var model = PretrainedModel.Load(Fixture(name), ScalarType.Float32);
        TransformersExpected.AssertLastPositionLogits(model, Fixture(name), name);
    }

    /// <summary>
    /// phi3_longrope_crossing: prompts of 12 and 14 tokens with a 16-token original context, so decoding reaches position
    /// 16, where LongRoPE turns to the long factors. transformers then drops the KV cache and recomputes every position
    /// with them; keeping the short-factor keys gave other tokens from there on (e.g. 3 3 3 74 … instead of 3 74 46 …).
    /// </summary>
    [Theory]
    [InlineData("llama_rope_parameters")]
    [InlineData("gemma3_rope_parameters")]
    [InlineData("phi3_longrope_crossing")]
    public void GreedyIdsMatchWithAndWithoutCache(string name)
    {
        using var model = PretrainedModel.Load(Fixture(name), ScalarType.Float32);
        foreach (var useCache in new[] { true, false })
            foreach (var c in Cases(name))
            {
                var options = new GenerationOptions { MaxNewTokens = c.GreedyIds.Length, Temperature = 0, EosTokenIds = [] };
                var produced = TokenGenerator.Generate(model, [c.InputIds], options, useCache: useCache)[0].Tokens;
                Assert.Equal(c.GreedyIds, produced);
            }
    }

    private static ModelConfig Parse(JsonObject json) => ModelConfig.FromJson(json);

    [Fact]
    public void RopeParametersGiveThetaAndScaling()
    {
        var json = TestModels.LlamaConfigJson();
        json.Remove("rope_theta");
        json.Remove("rope_scaling");
        json["rope_parameters"] = new JsonObject { ["rope_type"] = "linear", ["rope_theta"] = 500000.0, ["factor"] = 2.0 };
        var config = Parse(json);
        Assert.Equal(500000.0, config.RopeTheta);
        Assert.Equal("linear", config.RopeScaling!.Type);
        Assert.Equal(2.0, config.RopeScaling.Factor);

        json["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 1e6 };
        config = Parse(json);
        Assert.Equal(1e6, config.RopeTheta);
        Assert.Null(config.RopeScaling);
    }

    /// <summary>A legacy rope_scaling wins over rope_parameters (transformers: <c>rope_scaling or rope_parameters</c>).</summary>
    [Fact]
    public void LegacyRopeScalingTakesPrecedence()
    {
        var json = TestModels.LlamaConfigJson(ropeScaling: new JsonObject { ["type"] = "linear", ["factor"] = 4.0 });
        json["rope_parameters"] = new JsonObject { ["rope_type"] = "linear", ["rope_theta"] = 7.0, ["factor"] = 2.0 };
        var config = Parse(json);
        Assert.Equal(4.0, config.RopeScaling!.Factor);
        Assert.Equal(10000.0, config.RopeTheta);
    }

    [Fact]
    public void Gemma3RopeParametersPerLayerType()
    {
        var json = TestModels.Gemma3ConfigJson();
        json.Remove("rope_theta");
        json.Remove("rope_local_base_freq");
        json.Remove("rope_scaling");
        json["rope_parameters"] = new JsonObject
        {
            ["full_attention"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 8.0, ["rope_theta"] = 1e6 },
            ["sliding_attention"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 100.0 },
        };
        var config = Parse(json);
        Assert.Equal(1e6, config.RopeTheta);
        Assert.Equal(100.0, config.RopeLocalBaseFreq);
        Assert.Equal(8.0, config.RopeScaling!.Factor);

        json["rope_parameters"]!["sliding_attention"]!["rope_type"] = "yarn";
        json["rope_parameters"]!["sliding_attention"]!["factor"] = 2.0;
        var error = Assert.Throws<NotSupportedException>(() => Parse(json));
        Assert.Contains("rope_parameters.sliding_attention.rope_type", error.Message);
    }

    /// <summary>A family that rotates every layer alike refuses per-layer-type settings that differ, naming both.</summary>
    [Fact]
    public void DifferentRopePerLayerTypeIsRefusedWhereUnsupported()
    {
        var json = TestModels.With(TestModels.Qwen3ConfigJson(), new JsonObject
        {
            ["use_sliding_window"] = true, ["sliding_window"] = 8,
            ["layer_types"] = new JsonArray("full_attention", "sliding_attention"),
            ["rope_parameters"] = new JsonObject
            {
                ["full_attention"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 1e6 },
                ["sliding_attention"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 1e4 },
            },
        });
        json.Remove("rope_scaling");
        var error = Assert.Throws<NotSupportedException>(() => Parse(json));
        Assert.Contains("rope_parameters.full_attention", error.Message);
        Assert.Contains("rope_parameters.sliding_attention", error.Message);
    }

    /// <summary>
    /// transformers 5 fills a missing original_max_position_embeddings of llama3 (and yarn, longrope) from
    /// max_position_embeddings (standardize_rope_params), and a LongRoPE factor given in the settings is used as given.
    /// </summary>
    [Fact]
    public void MissingOriginalContextIsMaxPositionEmbeddingsAndLongRopeFactorIsKept()
    {
        var llama = Parse(TestModels.LlamaConfigJson(ropeScaling: new JsonObject
            { ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0 }));
        Assert.Equal(128, llama.RopeScaling!.OriginalMaxPositionEmbeddings);

        var phi = TestModels.Phi3ConfigJson();
        var rotaryPairs = Parse(phi).RotaryDim / 2;
        var factors = new JsonArray(Enumerable.Repeat(1.0, rotaryPairs).Select(f => (JsonNode?)f).ToArray());
        phi["rope_scaling"] = new JsonObject
            { ["type"] = "longrope", ["factor"] = 16.0, ["short_factor"] = factors.DeepClone(), ["long_factor"] = factors.DeepClone() };
        Assert.Equal(16.0, Parse(phi).RopeScaling!.Factor);
        phi["rope_scaling"]!.AsObject().Remove("factor");
        Assert.Equal(256.0 / 64.0, Parse(phi).RopeScaling!.Factor);   // max_position_embeddings / original_max_position_embeddings
    }
}
