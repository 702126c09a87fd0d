using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Tests.Models;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// Phi-1 / Phi-1.5 / Phi-2 exported as llama.cpp's phi2, on the fixtures of Models/Fixtures (make_phi_reference.py,
/// transformers' Phi written out in plain PyTorch): phi_untied_mha (phi-2's shape in small: 2 layers, 4 heads of 16
/// rotating 6 dims, an untied head with its bias) and phi_tied_gqa (2 query heads over 1 key/value head rotating 24 of
/// 32 dims, rope_theta 500, a tied head keeping its own bias). The files are read back for what convert_hf_to_gguf's
/// Phi2Model writes, and run by real llama.cpp (node-llama-cpp's CPU build) against the reference's own logits and
/// greedy tokens (EXPECTED.json), SharpTune's f16-rounded model, a q8_0 file, and a LoRA adapter GGUF applied at run time.
/// phi_qk_layernorm, whose per-head q/k LayerNorms llama.cpp's phi2 has no place for, is refused.
/// </summary>
public class GgufPhiTests
{
    private static readonly string[] Fixtures = ["phi_untied_mha", "phi_tied_gqa"];

    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    /// <summary>
    /// |Δ log p| allowed between llama.cpp (float32 weights, cache and attention) and the float64 reference. llama.cpp
    /// evaluates gelu_new (the tanh GELU) by a table over f16 inputs and outputs: measured 1.5e-3 to 3.0e-3 on these
    /// fixtures, and the reference with its GELU's inputs and outputs rounded through f16 differs from itself by the same
    /// amounts to three digits. On the reference, rotating 2 more dimensions, leaving out lm_head's bias, or the tied
    /// fixture's rope_theta 500 read as llama.cpp's default 10000 moves them by 0.7 to 4.
    /// </summary>
    private const double LogProbabilityTolerance = 4e-3;

    /// <summary>
    /// |Δ log p| allowed for llama.cpp's q8_0 file (weights and, in its dot products, activations in 8 bits): measured up
    /// to 0.35 (the tied fixture's 13-token prompt, whose embeddings also serve as the 8-bit output matrix).
    /// </summary>
    private const double Q8LogProbabilityTolerance = 0.5;

    [Fact]
    public void UntiedFixtureIsWrittenAsLlamaCppsPhi2()
    {
        using var dir = new TempDir();
        var folder = FixtureCopy(dir, Fixture("phi_untied_mha"));
        var report = ExportModel(folder, Path.Combine(dir.Path, "phi.gguf"), GgufExportType.F32);
        Assert.Equal("phi2", report.Architecture);
        Assert.Empty(report.Warnings);
        var file = GgufReader.Open(report.Path);
        Assert.Equal("phi2", file.Metadata["general.architecture"].AsString());
        Assert.Equal(256, file.Metadata["phi2.context_length"].AsInteger());
        Assert.Equal(64, file.Metadata["phi2.embedding_length"].AsInteger());
        Assert.Equal(256, file.Metadata["phi2.feed_forward_length"].AsInteger());   // the converter's 4 × hidden_size
        Assert.Equal(2, file.Metadata["phi2.block_count"].AsInteger());
        Assert.Equal(4, file.Metadata["phi2.attention.head_count"].AsInteger());
        Assert.Equal(4, file.Metadata["phi2.attention.head_count_kv"].AsInteger());
        Assert.Equal(1e-5, file.Metadata["phi2.attention.layer_norm_epsilon"].AsFloat(), 9);
        Assert.Equal(6, file.Metadata["phi2.rope.dimension_count"].AsInteger());   // int(0.4 × 64) // 4 = int(0.4 × 16)
        Assert.Equal(10000.0, file.Metadata["phi2.rope.freq_base"].AsFloat());
        Assert.False(file.Metadata["tokenizer.ggml.add_bos_token"].AsBool());        // Phi2Model's add_add_bos_token(False)
        string[] layer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down"];
        var expectedNames = new List<string> { "token_embd.weight" };
        for (var i = 0; i < 2; i++)
            foreach (var tensor in layer)
                expectedNames.AddRange([$"blk.{i}.{tensor}.weight", $"blk.{i}.{tensor}.bias"]);
        expectedNames.AddRange(["output_norm.weight", "output_norm.bias", "output.weight", "output.bias"]);
        Assert.Equal(expectedNames.Order(), file.Tensors.Select(t => t.Name).Order());
        // ggml shapes are [columns, rows].
        Assert.Equal([64L, 64L], file.Tensor("blk.0.attn_k.weight").Shape);
        Assert.Equal([64L, 256L], file.Tensor("blk.1.ffn_up.weight").Shape);
        Assert.Equal([256L, 64L], file.Tensor("blk.1.ffn_down.weight").Shape);
        Assert.Equal([64L, 64L], file.Tensor("output.weight").Shape);
        Assert.Equal([64L], file.Tensor("output.bias").Shape);

        using var checkpoint = HfCheckpoint.Open(folder);
        float[] Read(string name)
        {
            using var t = checkpoint.Read(name, TorchSharp.torch.ScalarType.Float32);
            return t.data<float>().ToArray();
        }
        foreach (var (hf, gguf) in new[]
                 {
                     ("model.layers.1.self_attn.q_proj.weight", "blk.1.attn_q.weight"), ("model.layers.1.self_attn.k_proj.bias", "blk.1.attn_k.bias"),
                     ("model.layers.0.self_attn.dense.weight", "blk.0.attn_output.weight"), ("model.layers.0.mlp.fc1.bias", "blk.0.ffn_up.bias"),
                     ("model.layers.1.mlp.fc2.weight", "blk.1.ffn_down.weight"), ("model.layers.0.input_layernorm.bias", "blk.0.attn_norm.bias"),
                     ("model.final_layernorm.weight", "output_norm.weight"), ("lm_head.weight", "output.weight"), ("lm_head.bias", "output.bias"),
                 })
            Assert.Equal(Read(hf), file.ReadFloat32(gguf));
    }

    /// <summary>
    /// llama.cpp's phi2 loader requires output.weight and output.bias: the tied fixture (no lm_head.weight in its file) gets
    /// the embeddings as output.weight and its own lm_head.bias as output.bias; its single key/value head is head_count_kv.
    /// </summary>
    [Fact]
    public void TiedGroupedQueryFixtureGetsTheEmbeddingsAsOutputWithItsOwnBias()
    {
        using var dir = new TempDir();
        var folder = FixtureCopy(dir, Fixture("phi_tied_gqa"));
        var file = GgufReader.Open(ExportModel(folder, Path.Combine(dir.Path, "tied.gguf"), GgufExportType.F32).Path);
        Assert.Equal(2, file.Metadata["phi2.attention.head_count"].AsInteger());
        Assert.Equal(1, file.Metadata["phi2.attention.head_count_kv"].AsInteger());
        Assert.Equal(24, file.Metadata["phi2.rope.dimension_count"].AsInteger());   // int(0.75 × 32)
        Assert.Equal(500.0, file.Metadata["phi2.rope.freq_base"].AsFloat());
        Assert.Equal(96, file.Metadata["phi2.feed_forward_length"].AsInteger());
        Assert.Equal([64L, 32L], file.Tensor("blk.0.attn_v.weight").Shape);
        Assert.Equal(file.ReadFloat32("token_embd.weight"), file.ReadFloat32("output.weight"));
        using var checkpoint = HfCheckpoint.Open(folder);
        Assert.False(checkpoint.Tensors.ContainsKey("lm_head.weight"));
        using var bias = checkpoint.Read("lm_head.bias", TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(bias.data<float>().ToArray(), file.ReadFloat32("output.bias"));
    }

    [Theory]
    [InlineData("phi_qk_layernorm", null, null, "qk_layernorm has no llama.cpp phi2 equivalent")]
    [InlineData("phi_untied_mha", "rope_scaling", "linear", "rope_scaling 'linear'")]
    [InlineData("phi_untied_mha", "hidden_act", "relu", "hidden_act 'relu'")]
    public void ConfigurationsLlamaCppsPhi2WouldComputeDifferentlyAreRefused(string fixture, string? field, string? value, string named)
    {
        using var dir = new TempDir();
        var folder = FixtureCopy(dir, Fixture(fixture));
        if (field is not null)
        {
            var configPath = Path.Combine(folder, "config.json");
            var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
            config[field] = field == "rope_scaling" ? new JsonObject { ["rope_type"] = value, ["factor"] = 2.0 } : value;
            File.WriteAllText(configPath, config.ToJsonString());
        }
        var output = Path.Combine(dir.Path, "refused.gguf");
        var error = Assert.Throws<NotSupportedException>(() => ExportModel(folder, output, GgufExportType.F32));
        Assert.Contains(named, error.Message);
        Assert.StartsWith("PhiForCausalLM: ", error.Message);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void LoraTargetsMapToThePhi2Tensors()
    {
        var phi = new PhiGguf();
        Assert.Equal("blk.3.attn_q.weight", phi.LinearName("model.layers.3.self_attn.q_proj.weight"));
        Assert.Equal("blk.0.attn_k.weight", phi.LinearName("model.layers.0.self_attn.k_proj.weight"));
        Assert.Equal("blk.0.attn_v.weight", phi.LinearName("model.layers.0.self_attn.v_proj.weight"));
        Assert.Equal("blk.2.attn_output.weight", phi.LinearName("model.layers.2.self_attn.dense.weight"));
        Assert.Equal("blk.1.ffn_up.weight", phi.LinearName("model.layers.1.mlp.fc1.weight"));
        Assert.Equal("blk.1.ffn_down.weight", phi.LinearName("model.layers.1.mlp.fc2.weight"));
        Assert.Null(phi.LinearName("model.layers.1.input_layernorm.weight"));
        Assert.Null(phi.LinearName("lm_head.weight"));
    }

    /// <summary>
    /// Both fixtures exported as f32, run by llama.cpp: next-token log-probabilities and greedy tokens against the
    /// reference's (EXPECTED.json); the f16 files' greedy tokens against SharpTune's model with its matrices rounded
    /// through f16; the q8_0 files' log-probabilities near the reference's and most of their greedy tokens the reference's.
    /// </summary>
    [LlamaCppFact]
    public void FixturesExportedAsF32F16AndQ8_0RunInLlamaCppLikeTheReferenceAndSharpTune()
    {
        LlamaCppFixtureChecks.RunReferenceComparisons(Fixtures, LogProbabilityTolerance, Q8LogProbabilityTolerance, "the reference's",
            files => Assert.Contains(GgmlType.F16, GgufReader.Open(files.F16).Tensors.Select(t => t.Type)));
    }

    /// <summary>
    /// A LoRA adapter on every linear layer of both fixtures (q_proj, k_proj, v_proj, dense, fc1, fc2), exported with
    /// gguf-lora and applied by llama.cpp to the f32 base: the same greedy tokens as SharpTune's model with the adapter
    /// merged, as does the base exported with the adapter merged in.
    /// </summary>
    [LlamaCppFact]
    public void LoraAdaptersAppliedByLlamaCppDecodeLikeTheMergedModel()
    {
        LlamaCppFixtureChecks.RunLoraComparisons(Fixtures, seed: 41, (folder, lora) =>
        {
            Assert.Equal("phi2", lora.Architecture);
            Assert.Equal(2 * 6 * ModelConfig.Load(folder).NumLayers, lora.TensorTypes[GgmlType.F32]);   // lora_a and lora_b for 6 linear layers a block
            var loraFile = GgufReader.Open(lora.Path);
            foreach (var target in new[] { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down" })
                Assert.Contains($"blk.0.{target}.weight.lora_b", loraFile.Tensors.Select(t => t.Name));
        });
    }
}
