using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using SharpTune.Tests.Models;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// StableLM exported as llama.cpp's stablelm, on the fixtures of Models/Fixtures (make_stablelm_reference.py,
/// transformers' StableLM written out in plain PyTorch): stablelm_parallel_qkln (parallel residual, per-head q/k norms
/// stacked into attn_q_norm / attn_k_norm, q/k/v biases, 1 key/value head for 2 query heads, rope_theta 2000 and
/// partial_rotary_factor 0.5 only in rope_parameters) and stablelm_sequential
/// (sequential residual with ffn_norm, no biases, tied, rope_theta 500). The files are read back for what
/// convert_hf_to_gguf's StableLMModel writes, and run by real llama.cpp (node-llama-cpp's CPU build) against the
/// reference's logits and greedy tokens (EXPECTED.json), SharpTune's f16-rounded model, a q8_0 file, and a LoRA adapter.
/// </summary>
public class GgufStableLmTests
{
    private static readonly string[] Fixtures = ["stablelm_parallel_qkln", "stablelm_sequential"];

    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    /// <summary>
    /// |Δ log p| allowed between llama.cpp (float32 weights, cache and attention) and the float64 reference: measured
    /// 0.9e-6 to 5.9e-6 on these fixtures (llama.cpp's SiLU and LayerNorms are float32 throughout).
    /// </summary>
    private const double LogProbabilityTolerance = 2e-5;

    /// <summary>|Δ log p| allowed for the q8_0 file (weights and activations in 8 bits): measured 0.05 to 0.32.</summary>
    private const double Q8LogProbabilityTolerance = 0.5;

    [Fact]
    public void ParallelFixtureIsWrittenAsLlamaCppsStableLm()
    {
        using var dir = new TempDir();
        var folder = FixtureCopy(dir, Fixture("stablelm_parallel_qkln"));
        var report = ExportModel(folder, Path.Combine(dir.Path, "stablelm.gguf"), GgufExportType.F32);
        Assert.Equal("stablelm", report.Architecture);
        Assert.Empty(report.Warnings);
        var file = GgufReader.Open(report.Path);
        Assert.Equal("stablelm", file.Metadata["general.architecture"].AsString());
        Assert.Equal(32, file.Metadata["stablelm.embedding_length"].AsInteger());
        Assert.Equal(64, file.Metadata["stablelm.feed_forward_length"].AsInteger());
        Assert.Equal(2, file.Metadata["stablelm.attention.head_count"].AsInteger());
        Assert.Equal(1, file.Metadata["stablelm.attention.head_count_kv"].AsInteger());
        Assert.Equal(8, file.Metadata["stablelm.rope.dimension_count"].AsInteger());   // int(0.5 × 16), from rope_parameters
        Assert.Equal(2000.0, file.Metadata["stablelm.rope.freq_base"].AsFloat(), 9);
        Assert.True(file.Metadata["stablelm.use_parallel_residual"].AsBool());
        Assert.Equal(1e-5, file.Metadata["stablelm.attention.layer_norm_epsilon"].AsFloat(), 9);
        string[] weighted = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "attn_q_norm", "attn_k_norm"];
        var expectedNames = new List<string> { "token_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight" };
        for (var i = 0; i < 2; i++)
        {
            expectedNames.AddRange(weighted.Select(t => $"blk.{i}.{t}.weight"));
            expectedNames.AddRange(new[] { "attn_norm", "attn_q", "attn_k", "attn_v" }.Select(t => $"blk.{i}.{t}.bias"));
            expectedNames.Add($"blk.{i}.attn_norm.weight");
        }
        Assert.Equal(expectedNames.Order(), file.Tensors.Select(t => t.Name).Order());
        Assert.Equal([16L, 2L], file.Tensor("blk.0.attn_q_norm.weight").Shape);   // ggml [head width, heads]
        Assert.Equal([16L, 1L], file.Tensor("blk.1.attn_k_norm.weight").Shape);

        var sequential = ExportModel(FixtureCopy(dir, Fixture("stablelm_sequential")), Path.Combine(dir.Path, "sequential.gguf"), GgufExportType.F32);
        var sequentialNames = GgufReader.Open(sequential.Path).Tensors.Select(t => t.Name).ToHashSet();
        Assert.Contains("blk.1.ffn_norm.bias", sequentialNames);
        Assert.Contains("output.weight", sequentialNames);   // tied: the embeddings, as llama.cpp's loader requires
        Assert.DoesNotContain(sequentialNames, n => n.Contains("attn_q.bias") || n.Contains("q_norm"));
    }

    [Fact]
    public void ConfigurationsLlamaCppsStableLmWouldComputeDifferentlyAreRefused()
    {
        var scaled = ModelConfig.FromJson(TestModels.With(
            JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture("stablelm_sequential"), "config.json")))!.AsObject(),
            new JsonObject { ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 } }));
        Assert.StartsWith("StableLmForCausalLM: rope_scaling 'linear' has no llama.cpp stablelm equivalent",
            Assert.Throws<NotSupportedException>(() => GgufArchitecture.For(scaled).Check(scaled)).Message);
    }

    [LlamaCppFact]
    public void FixturesExportedAsF32F16AndQ8_0RunInLlamaCppLikeTheReferenceAndSharpTune()
    {
        LlamaCppFixtureChecks.RunReferenceComparisons(Fixtures, LogProbabilityTolerance, Q8LogProbabilityTolerance, "the reference's");
    }

    [LlamaCppFact]
    public void LoraAdaptersAppliedByLlamaCppDecodeLikeTheMergedModel()
    {
        LlamaCppFixtureChecks.RunLoraComparisons(Fixtures, seed: 43, (_, lora) =>
        {
            Assert.Equal("stablelm", lora.Architecture);
            var loraFile = GgufReader.Open(lora.Path);
            foreach (var target in new[] { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" })
                Assert.Contains($"blk.0.{target}.weight.lora_b", loraFile.Tensors.Select(t => t.Name));
        });
    }
}
