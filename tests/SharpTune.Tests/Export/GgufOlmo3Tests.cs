using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using SharpTune.Tests.Models;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// OLMo 3 exported as llama.cpp's olmo2 with <c>attention.sliding_window</c> (convert_hf_to_gguf.py registers
/// Olmo3ForCausalLM under Olmo2Model), on Models/Fixtures/olmo3_sliding (make_olmo3_reference.py: OLMo 3's default
/// pattern, three sliding layers of four, a window of 4 that both prompts cross) and run by real llama.cpp
/// (node-llama-cpp's CPU build) against the float64 reference's log-probabilities and greedy tokens. A layer pattern
/// llama.cpp's olmo2 cannot express (olmo3_sliding_linear's full, sliding, sliding, full) is refused by name.
/// </summary>
public class GgufOlmo3Tests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    /// <summary>
    /// |Δ log p| allowed between llama.cpp (float32 weights, cache and attention) and the float64 reference: measured
    /// 1.3e-6 and 1.9e-6; the reference without its window differs from itself by 1.2 and 3.3 on the two prompts.
    /// </summary>
    private const double LogProbabilityTolerance = 2e-5;

    /// <summary>|Δ log p| allowed for the q8_0 file (weights and activations in 8 bits): measured 0.055 and 0.067.</summary>
    private const double Q8LogProbabilityTolerance = 0.5;

    [Fact]
    public void TheWindowIsWrittenAndOtherLayerPatternsAreRefused()
    {
        using var dir = new TempDir();
        var report = ExportModel(FixtureCopy(dir, Fixture("olmo3_sliding")), Path.Combine(dir.Path, "olmo3.gguf"), GgufExportType.F32);
        Assert.Equal("olmo2", report.Architecture);
        var file = GgufReader.Open(report.Path);
        Assert.Equal(4, file.Metadata["olmo2.attention.sliding_window"].AsInteger());
        Assert.Contains("blk.3.attn_q_norm.weight", file.Tensors.Select(t => t.Name));

        var other = ModelConfig.Load(Fixture("olmo3_sliding_linear"));
        var refused = Assert.Throws<NotSupportedException>(() => GgufArchitecture.For(other).Check(other));
        Assert.StartsWith("Olmo3ForCausalLM: layer_types [full_attention, sliding_attention, sliding_attention, full_attention] has no llama.cpp olmo2 equivalent",
            refused.Message);
        var ownTheta = ModelConfig.FromJson(TestModels.With(
            JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture("olmo3_sliding"), "config.json")))!.AsObject(), new JsonObject
            {
                ["rope_parameters"] = new JsonObject
                {
                    ["full_attention"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 500.0 },
                    ["sliding_attention"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 10000.0 },
                },
            }));
        Assert.Contains("the sliding layers' rope_theta 10000", Assert.Throws<NotSupportedException>(() => GgufArchitecture.For(ownTheta).Check(ownTheta)).Message);
    }

    /// <summary>
    /// YaRN is written with the converter's Olmo2Model keys (type, factor, original context), so llama.cpp's olmo2 scales
    /// the full-attention layers; TheSlidingFixtureRunsInLlamaCppLikeTheReference runs olmo3_sliding_yarn against its
    /// float64 reference. A YaRN llama.cpp's keys cannot carry (a non-default beta_fast) is refused.
    /// </summary>
    [Fact]
    public void YarnIsWrittenWithTheConvertersKeysAndOtherBetasAreRefused()
    {
        using var dir = new TempDir();
        var report = ExportModel(FixtureCopy(dir, Fixture("olmo3_sliding_yarn")), Path.Combine(dir.Path, "olmo3-yarn.gguf"), GgufExportType.F32);
        var file = GgufReader.Open(report.Path);
        Assert.Equal("yarn", file.Metadata["olmo2.rope.scaling.type"].AsString());
        Assert.Equal(4f, file.Metadata["olmo2.rope.scaling.factor"].AsFloat());
        Assert.Equal(64, file.Metadata["olmo2.rope.scaling.original_context_length"].AsInteger());
        Assert.Equal(4, file.Metadata["olmo2.attention.sliding_window"].AsInteger());

        var otherBeta = ModelConfig.FromJson(TestModels.With(
            JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture("olmo3_sliding_yarn"), "config.json")))!.AsObject(), new JsonObject
            {
                ["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 64, ["beta_fast"] = 16.0 },
            }));
        Assert.Contains("this YaRN rope_scaling sets beta_fast", Assert.Throws<NotSupportedException>(() => GgufArchitecture.For(otherBeta).Check(otherBeta)).Message);
    }

    /// <summary>
    /// A YaRN factor other than max_position_embeddings / original_max_position_embeddings: transformers 4.56 and later rotate
    /// with the factor and warn (huggingface/transformers#40320), 4.55 and earlier took the ratio (#38224), so the export warns
    /// and names both; the fixture's factor 4 = 256 / 64 and an original context left out (taken as max_position_embeddings)
    /// give no warning.
    /// </summary>
    [Fact]
    public void A_yarn_factor_that_is_not_the_context_ratio_is_warned_about()
    {
        var fixture = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture("olmo3_sliding_yarn"), "config.json")))!.AsObject();
        ModelConfig WithScaling(JsonObject scaling) => ModelConfig.FromJson(TestModels.With((JsonObject)fixture.DeepClone(), new JsonObject { ["rope_scaling"] = scaling }));

        var mismatched = WithScaling(new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 32 });
        var warning = Assert.Single(GgufArchitecture.For(mismatched).Check(mismatched));
        Assert.Contains("rope_scaling.factor 4 differs from max_position_embeddings / original_max_position_embeddings (256 / 32 = 8)", warning);
        Assert.Contains("transformers 4.55 and earlier used the ratio", warning);

        var fixtureConfig = ModelConfig.Load(Fixture("olmo3_sliding_yarn"));
        Assert.Empty(GgufArchitecture.For(fixtureConfig).Check(fixtureConfig));
        var noOriginal = WithScaling(new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0 });
        Assert.Empty(GgufArchitecture.For(noOriginal).Check(noOriginal));
    }

    /// <summary>
    /// An OLMo 3 whose layers all attend in full is llama.cpp's plain olmo2: exported without a window (convert_hf_to_gguf.py
    /// writes sliding_window only when layer_types has sliding layers), not refused for its layer pattern.
    /// </summary>
    [Fact]
    public void AnOlmo3WithoutSlidingLayersExportsAsPlainOlmo2()
    {
        using var dir = new TempDir();
        var report = ExportModel(AllFullCopy(dir), Path.Combine(dir.Path, "olmo3_full.gguf"), GgufExportType.F32);
        Assert.Equal("olmo2", report.Architecture);
        var file = GgufReader.Open(report.Path);
        Assert.Equal(4, file.Metadata["olmo2.block_count"].AsInteger());
        Assert.DoesNotContain("olmo2.attention.sliding_window", file.Metadata.Keys);
    }

    /// <summary>
    /// That file run by llama.cpp's olmo2 (float32 weights, cache and attention) gives SharpTune's log-probabilities
    /// (within the reference comparison's tolerance) and greedy tokens on both fixture prompts, the longer one past the
    /// fixture's window of 4: every layer attends in full on both sides (sliding ones would move them by 1.2 to 3.3).
    /// </summary>
    [LlamaCppFact]
    public void AnOlmo3WithoutSlidingLayersRunsInLlamaCppLikeSharpTune()
    {
        using var dir = new TempDir();
        RunsInLlamaCppLikeSharpTune(AllFullCopy(dir), Path.Combine(dir.Path, "olmo3_full.gguf"), "olmo3 all full_attention");
    }

    /// <summary>
    /// olmo3_sliding with linear rope_scaling (factor 4), run by llama.cpp's olmo2, gives SharpTune's log-probabilities and
    /// greedy tokens: the full layer rotates scaled and the sliding ones unscaled on both sides (SharpTune's OLMo 3 does so
    /// against the float64 reference, olmo3_sliding_linear in Olmo3Tests).
    /// </summary>
    [LlamaCppFact]
    public void AnOlmo3WithLinearRopeScalingRunsInLlamaCppLikeSharpTune()
    {
        using var dir = new TempDir();
        var folder = FixtureCopy(dir, Fixture("olmo3_sliding"));
        var configPath = Path.Combine(folder, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        json["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 4.0 };
        File.WriteAllText(configPath, json.ToJsonString());
        var path = Path.Combine(dir.Path, "olmo3_linear.gguf");
        RunsInLlamaCppLikeSharpTune(folder, path, "olmo3 linear rope_scaling");
        Assert.Equal("linear", GgufReader.Open(path).Metadata["olmo2.rope.scaling.type"].AsString());
    }

    private static void RunsInLlamaCppLikeSharpTune(string folder, string gguf, string label)
    {
        var path = ExportModel(folder, gguf, GgufExportType.F32).Path;
        var items = new List<(JsonObject Job, Action<JsonObject> Check)>();
        using (var model = PretrainedModel.Load(folder, TorchSharp.torch.ScalarType.Float32))
        {
            model.eval();
            foreach (var prompt in TransformersExpected.Read(folder).Select(c => c.InputIds))
            {
                var what = $"{label}, prompt of {prompt.Length}";
                var logProbabilities = LogProbabilities(model, prompt);
                var greedy = Greedy(model, prompt, 8);
                items.Add((Float32(LlamaCppRuntime.Distribution(path, prompt)), result =>
                {
                    var difference = MaxLogProbabilityDifference(logProbabilities, LlamaCppRuntime.Probabilities(result, logProbabilities.Length));
                    Assert.True(difference < LogProbabilityTolerance, $"{what}: llama.cpp's log-probabilities differ from SharpTune's by up to {difference:G3}");
                }));
                items.Add((Float32(LlamaCppRuntime.Greedy(path, prompt, 8)), result => AssertSameIds(what, greedy, Ids(result, "greedy"))));
            }
        }
        RunAll(items);
    }

    private static string AllFullCopy(TempDir dir)
    {
        var folder = FixtureCopy(dir, Fixture("olmo3_sliding"));
        var configPath = Path.Combine(folder, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        json["layer_types"] = new JsonArray("full_attention", "full_attention", "full_attention", "full_attention");
        File.WriteAllText(configPath, json.ToJsonString());
        return folder;
    }

    [LlamaCppFact]
    public void TheSlidingFixtureRunsInLlamaCppLikeTheReference()
    {
        LlamaCppFixtureChecks.RunReferenceComparisons(["olmo3_sliding", "olmo3_sliding_yarn"], LogProbabilityTolerance, Q8LogProbabilityTolerance, "the reference's");
    }
}
