using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// YaRN and dynamic NTK RoPE scaling against transformers' formulas (modeling_rope_utils: _compute_yarn_parameters,
/// _compute_dynamic_ntk_parameters) worked out here in double precision, value by value.
/// </summary>
public class RopeScalingTests
{
    private const int HeadDim = 16;          // LlamaConfigJson: hidden 64, 4 heads; 8 frequencies
    private const double Theta = 10000;

    private static ModelConfig Config(JsonObject scaling, int maxPositions = 128) =>
        ModelConfig.FromJson(TestModels.With(TestModels.LlamaConfigJson(ropeScaling: scaling),
            new JsonObject { ["max_position_embeddings"] = maxPositions }));

    private static void AssertAngles(ModelConfig config, long[] positions, Func<int, double> inverseFrequency, double attentionFactor)
    {
        using var rope = RotaryEmbedding.ForConfig(config, CPU);
        var (cos, sin) = rope.Angles(tensor(positions).unsqueeze(0), ScalarType.Float32);        // (1, 1, T, 16)
        for (var t = 0; t < positions.Length; t++)
            for (var i = 0; i < HeadDim; i++)
            {
                var angle = positions[t] * inverseFrequency(i % (HeadDim / 2));
                Assert.Equal(Math.Cos(angle) * attentionFactor, cos[0, 0, t, i].item<float>(), 4);
                Assert.Equal(Math.Sin(angle) * attentionFactor, sin[0, 0, t, i].item<float>(), 4);
            }
    }

    /// <summary>
    /// transformers' YaRN frequencies: with original context 64, β_fast 32 and β_slow 1 on 16 dimensions the ramp runs
    /// from dimension pair ⌊16·ln(64/(32·2π))/(2 ln 10⁴)⌋ → 0 to ⌈16·ln(64/2π)/(2 ln 10⁴)⌉ = 3: pair 0 keeps its
    /// frequency, pairs 1 and 2 blend, pairs 3 to 7 are divided by the factor.
    /// </summary>
    [Theory]
    [InlineData(null, null, null, true)]          // attention factor 0.1·ln 4 + 1
    [InlineData(1.0, 0.5, null, true)]            // DeepSeek's mscale ratio
    [InlineData(null, null, 1.25, false)]         // given attention factor; the ramp's ends not rounded
    public void YarnBlendsInterpolatedAndOriginalFrequenciesAndScalesCosAndSin(double? mscale, double? mscaleAllDim,
        double? attentionFactor, bool truncate)
    {
        const double factor = 4, original = 64;
        var scaling = new JsonObject
        {
            ["rope_type"] = "yarn", ["factor"] = factor, ["original_max_position_embeddings"] = (int)original, ["truncate"] = truncate,
            ["mscale"] = mscale, ["mscale_all_dim"] = mscaleAllDim, ["attention_factor"] = attentionFactor,
        };
        double CorrectionDim(double rotations) => HeadDim * Math.Log(original / (rotations * 2 * Math.PI)) / (2 * Math.Log(Theta));
        double low = CorrectionDim(32), high = CorrectionDim(1);
        if (truncate) (low, high) = (Math.Floor(low), Math.Ceiling(high));
        (low, high) = (Math.Max(low, 0), Math.Min(high, HeadDim - 1));
        double Inverse(int pair)
        {
            var ramp = Math.Clamp((pair - low) / (high - low), 0, 1);
            var original = 1 / Math.Pow(Theta, 2.0 * pair / HeadDim);
            return original / factor * ramp + original * (1 - ramp);
        }
        static double MScale(double m) => 0.1 * m * Math.Log(factor) + 1;
        var expectedFactor = attentionFactor ?? (mscale is { } m ? MScale(m) / MScale(mscaleAllDim!.Value) : MScale(1));
        AssertAngles(Config(scaling), [0, 1, 7, 100, 255], Inverse, expectedFactor);
        // The ramp is really there: the first pair is untouched, the last divided by the factor, one in between neither.
        Assert.Equal(1.0, Inverse(0));
        Assert.Equal(1 / Math.Pow(Theta, 14.0 / 16) / factor, Inverse(7), 12);
        Assert.InRange(Inverse(1) * Math.Pow(Theta, 2.0 / 16), 1 / factor + 0.01, 0.99);
    }

    [Fact]
    public void DynamicNtkKeepsTheBaseWithinTheContextAndGrowsItWithTheSequencePastIt()
    {
        const double factor = 2;
        var config = Config(new JsonObject { ["rope_type"] = "dynamic", ["factor"] = factor }, maxPositions: 64);
        double Default(int pair) => 1 / Math.Pow(Theta, 2.0 * pair / HeadDim);
        AssertAngles(config, [0, 5, 63], Default, 1);                // max position + 1 = 64: the default base
        const double length = 100;                                    // max position 99
        var grown = Theta * Math.Pow(factor * length / 64 - (factor - 1), HeadDim / (HeadDim - 2.0));
        AssertAngles(config, [0, 5, 99], pair => 1 / Math.Pow(grown, 2.0 * pair / HeadDim), 1);
    }

    [Fact]
    public void TheContextLengthFollowsTheScalingAsVllmDerivesIt()
    {
        Assert.Equal(256, Config(new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 64 }).ContextLength);
        Assert.Equal(512, Config(new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0 }).ContextLength);   // original = max_position_embeddings
        Assert.Equal(256, Config(new JsonObject { ["rope_type"] = "dynamic", ["factor"] = 2.0 }).ContextLength);
        Assert.Equal(128, Config(new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 }).ContextLength);
        var error = Assert.Throws<InvalidDataException>(() => Config(new JsonObject { ["rope_type"] = "yarn" }));
        Assert.Contains("needs a factor", error.Message);
    }

    /// <summary>
    /// A YaRN model decodes through the KV cache (the fused decode pass, its rotation kernel) exactly as its full
    /// pass computes, and generation may run past max_position_embeddings up to the scaled context.
    /// </summary>
    [Theory]
    [InlineData("yarn")]
    [InlineData("dynamic")]
    public void AScaledModelGeneratesPastMaxPositionEmbeddingsAndItsCachedDecodingMatchesTheFullPass(string type)
    {
        var json = TestModels.With(TestModels.Qwen3ConfigJson(), new JsonObject
        {
            ["max_position_embeddings"] = 16,
            ["rope_scaling"] = new JsonObject { ["rope_type"] = type, ["factor"] = 4.0 },
        });
        manual_seed(3);
        using var model = ModelFactory.Create(ModelConfig.FromJson(json));
        model.eval();
        Assert.Equal(64, model.Config.ContextLength);
        var prompt = Enumerable.Range(0, 12).Select(i => 3 + i * 7 % 80).ToArray();
        var greedy = new GenerationOptions { Temperature = 0, EosTokenIds = [], MaxNewTokens = 20 };
        var cached = TokenGenerator.Generate(model, [prompt], greedy)[0].Tokens;
        Assert.Equal(20, cached.Count);
        if (type == "dynamic") return;   // its frequencies change with the length, so a cached key keeps the old ones (as in transformers)
        var full = TokenGenerator.Generate(model, [prompt], greedy, useCache: false)[0].Tokens;
        Assert.Equal(full, cached);
    }
}
