using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Tests.Models;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// GPT-NeoX / Pythia exported as llama.cpp's gptneox, on the transformers fixtures of Models/Fixtures
/// (make_gpt_neox_reference.py): parallel residual with 2 heads rotating a quarter of each, sequential residual with 4
/// heads rotating half, and one tied 128-wide head without attention biases. The files are read back here for what
/// convert_hf_to_gguf's GPTNeoXModel writes, and run by real llama.cpp (node-llama-cpp's CPU build) against
/// transformers' own logits and greedy tokens (EXPECTED.json), SharpTune's f16-rounded model, a q8_0 file, and a LoRA
/// adapter GGUF applied at run time.
/// </summary>
public class GgufGptNeoXTests
{
    private static readonly string[] Fixtures = ["gpt_neox_parallel", "gpt_neox_sequential", "gpt_neox_tied_head128"];

    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    /// <summary>
    /// |Δ log p| allowed between llama.cpp (float32 weights, cache and attention) and transformers (float64). llama.cpp's
    /// gptneox evaluates the exact GELU Pythia names with ggml's tanh approximation, looked up in a table of f16 inputs:
    /// measured up to 1.7e-3 on these fixtures (and up to 2.1e-3 against SharpTune's own forward with the tanh GELU, so the
    /// f16 table, not the approximation, dominates). A wrong q/k/v order, rotary size or residual form moves them by 1e-2 to 1.
    /// </summary>
    private const double LogProbabilityTolerance = 3e-3;

    /// <summary>|Δ log p| allowed between llama.cpp's q8_0 file (weights and, in its dot products, activations in 8 bits) and transformers: measured up to 0.21.</summary>
    private const double Q8LogProbabilityTolerance = 0.3;

    [Fact]
    public void ParallelFixtureIsWrittenAsLlamaCppsGptNeoXWithQkvRowsGroupedByQueryKeyValue()
    {
        using var dir = new TempDir();
        var folder = FixtureCopy(dir, Fixture("gpt_neox_parallel"));
        var report = ExportModel(folder, Path.Combine(dir.Path, "neox.gguf"), GgufExportType.F32);
        Assert.Equal("gptneox", report.Architecture);
        Assert.Contains(report.Warnings, w => w.Contains("tanh-approximated GELU") && w.Contains("\"gelu\""));
        var file = GgufReader.Open(report.Path);
        Assert.Equal("gptneox", file.Metadata["general.architecture"].AsString());
        Assert.Equal(2, file.Metadata["gptneox.block_count"].AsInteger());
        Assert.Equal(256, file.Metadata["gptneox.context_length"].AsInteger());
        Assert.Equal(32, file.Metadata["gptneox.embedding_length"].AsInteger());
        Assert.Equal(64, file.Metadata["gptneox.feed_forward_length"].AsInteger());
        Assert.Equal(2, file.Metadata["gptneox.attention.head_count"].AsInteger());
        Assert.Equal(4, file.Metadata["gptneox.rope.dimension_count"].AsInteger());   // int(0.25 × 32 / 2)
        Assert.True(file.Metadata["gptneox.use_parallel_residual"].AsBool());
        Assert.Equal(1e-5, file.Metadata["gptneox.attention.layer_norm_epsilon"].AsFloat(), 9);
        Assert.Equal(10000.0, file.Metadata["gptneox.rope.freq_base"].AsFloat());
        string[] layer = ["attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"];
        var expectedNames = new List<string> { "token_embd.weight" };
        for (var i = 0; i < 2; i++)
            foreach (var tensor in layer)
                expectedNames.AddRange([$"blk.{i}.{tensor}.weight", $"blk.{i}.{tensor}.bias"]);
        expectedNames.AddRange(["output_norm.weight", "output_norm.bias", "output.weight"]);
        Assert.Equal(expectedNames.Order(), file.Tensors.Select(t => t.Name).Order());
        // ggml shapes are [columns, rows].
        Assert.Equal([32L, 96L], file.Tensor("blk.0.attn_qkv.weight").Shape);
        Assert.Equal([96L], file.Tensor("blk.0.attn_qkv.bias").Shape);
        Assert.Equal([64L, 32L], file.Tensor("blk.1.ffn_down.weight").Shape);
        Assert.Equal([32L, 64L], file.Tensor("output.weight").Shape);

        // transformers' query_key_value rows are, per head h of 16 rows, h's query, key and value; the file's are every
        // head's query, then every key, then every value.
        using var checkpoint = HfCheckpoint.Open(folder);
        float[] Read(string name)
        {
            using var t = checkpoint.Read(name, TorchSharp.torch.ScalarType.Float32);
            return t.data<float>().ToArray();
        }
        var qkv = Read("gpt_neox.layers.1.attention.query_key_value.weight");
        var qkvBias = Read("gpt_neox.layers.1.attention.query_key_value.bias");
        var written = file.ReadFloat32("blk.1.attn_qkv.weight");
        var writtenBias = file.ReadFloat32("blk.1.attn_qkv.bias");
        for (var part = 0; part < 3; part++)          // q, k, v
            for (var head = 0; head < 2; head++)
                for (var row = 0; row < 16; row++)
                {
                    var from = head * 48 + part * 16 + row;
                    var to = part * 32 + head * 16 + row;
                    Assert.Equal(qkv.Skip(from * 32).Take(32), written.Skip(to * 32).Take(32));
                    Assert.Equal(qkvBias[from], writtenBias[to]);
                }
        Assert.Equal(Read("gpt_neox.layers.0.mlp.dense_h_to_4h.weight"), file.ReadFloat32("blk.0.ffn_up.weight"));
        Assert.Equal(Read("gpt_neox.final_layer_norm.bias"), file.ReadFloat32("output_norm.bias"));
        Assert.Equal(Read("embed_out.weight"), file.ReadFloat32("output.weight"));
    }

    /// <summary>
    /// llama.cpp's gptneox loader requires the output matrix and every bias: the tied fixture, without attention biases,
    /// gets the embeddings as output.weight and zero q/k/v and output-projection biases.
    /// </summary>
    [Fact]
    public void TiedFixtureWithoutAttentionBiasesGetsTheEmbeddingsAsOutputAndZeroBiases()
    {
        using var dir = new TempDir();
        var folder = FixtureCopy(dir, Fixture("gpt_neox_tied_head128"));
        var file = GgufReader.Open(ExportModel(folder, Path.Combine(dir.Path, "tied.gguf"), GgufExportType.F32).Path);
        Assert.Equal(32, file.Metadata["gptneox.rope.dimension_count"].AsInteger());   // int(0.25 × 128)
        Assert.Equal(file.ReadFloat32("token_embd.weight"), file.ReadFloat32("output.weight"));
        Assert.All(file.ReadFloat32("blk.0.attn_qkv.bias"), b => Assert.Equal(0f, b));
        Assert.Equal(384, file.ReadFloat32("blk.0.attn_qkv.bias").Length);
        Assert.All(file.ReadFloat32("blk.0.attn_output.bias"), b => Assert.Equal(0f, b));
        Assert.False(GgufReader.Open(ExportModel(FixtureCopy(dir, Fixture("gpt_neox_sequential")), Path.Combine(dir.Path, "seq.gguf"),
            GgufExportType.F32).Path).Metadata["gptneox.use_parallel_residual"].AsBool());
    }

    [Theory]
    [InlineData("rope_scaling", "linear", "rope_scaling 'linear'")]
    [InlineData("hidden_act", "relu", "hidden_act 'relu'")]
    public void ConfigurationsLlamaCppsGptNeoXWouldComputeDifferentlyAreRefused(string field, string value, string named)
    {
        using var dir = new TempDir();
        var folder = FixtureCopy(dir, Fixture("gpt_neox_parallel"));
        var configPath = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config[field] = field == "rope_scaling" ? new JsonObject { ["rope_type"] = value, ["factor"] = 2.0 } : value;
        File.WriteAllText(configPath, config.ToJsonString());
        var output = Path.Combine(dir.Path, "refused.gguf");
        var error = Assert.Throws<NotSupportedException>(() => ExportModel(folder, output, GgufExportType.F32));
        Assert.Contains(named, error.Message);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void LoraTargetsMapToTheGptNeoXTensorsAndQkvLoraBRowsAreRegroupedLikeTheWeight()
    {
        var neox = new GptNeoXGguf();
        Assert.Equal("blk.3.attn_qkv.weight", neox.LinearName("gpt_neox.layers.3.attention.query_key_value.weight"));
        Assert.Equal("blk.0.attn_output.weight", neox.LinearName("gpt_neox.layers.0.attention.dense.weight"));
        Assert.Equal("blk.1.ffn_up.weight", neox.LinearName("gpt_neox.layers.1.mlp.dense_h_to_4h.weight"));
        Assert.Equal("blk.1.ffn_down.weight", neox.LinearName("gpt_neox.layers.1.mlp.dense_4h_to_h.weight"));
        Assert.Null(neox.LinearName("gpt_neox.layers.1.input_layernorm.weight"));
        Assert.Null(neox.LinearName("embed_out.weight"));
        // 2 heads of width 1, rank 2: B's rows (h0 q, h0 k, h0 v, h1 q, h1 k, h1 v) become (q0, q1, k0, k1, v0, v1).
        var config = ModelConfig.Load(Fixture("gpt_neox_parallel"));
        float[] b = [10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61];
        Assert.Equal([10f, 11, 40, 41, 20, 21, 50, 51, 30, 31, 60, 61],
            neox.TransformLoraB("gpt_neox.layers.0.attention.query_key_value.weight", b, [6, 2], config));
        Assert.Equal(b, neox.TransformLoraB("gpt_neox.layers.0.attention.dense.weight", b, [6, 2], config));
    }

    /// <summary>
    /// The three fixtures exported as f32, run by llama.cpp: next-token log-probabilities and greedy tokens against
    /// transformers' (EXPECTED.json); the f16 files' greedy tokens against SharpTune's model with its matrices rounded
    /// through f16; the q8_0 files' log-probabilities near transformers' and most of their greedy tokens transformers'.
    /// </summary>
    [LlamaCppFact]
    public void FixturesExportedAsF32F16AndQ8_0RunInLlamaCppLikeTransformersAndSharpTune()
    {
        LlamaCppFixtureChecks.RunReferenceComparisons(Fixtures, LogProbabilityTolerance, Q8LogProbabilityTolerance, "transformers'");
    }

    /// <summary>
    /// A LoRA adapter on every linear layer of the parallel and sequential fixtures (the fused query_key_value included),
    /// exported with gguf-lora and applied by llama.cpp to the f32 base: the same greedy tokens as SharpTune's model with
    /// the adapter merged, as does the base exported with the adapter merged in. Without B's rows regrouped like the
    /// weight's, query_key_value's update would land on the wrong heads and parts.
    /// </summary>
    [LlamaCppFact]
    public void LoraAdaptersAppliedByLlamaCppDecodeLikeTheMergedModel()
    {
        // `export gguf --adapter` merges the adapter into the float32 weights before the rows are regrouped.
        LlamaCppFixtureChecks.RunLoraComparisons(["gpt_neox_parallel", "gpt_neox_sequential"], seed: 37, (_, lora) =>
        {
            Assert.Equal("gptneox", lora.Architecture);
            Assert.Equal(2 * 4 * 2, lora.TensorTypes[GgmlType.F32]);   // lora_a and lora_b for 4 linear layers in 2 blocks
        });
    }
}
