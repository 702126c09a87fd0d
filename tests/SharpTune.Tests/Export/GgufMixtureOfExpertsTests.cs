using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;
using static TorchSharp.torch;

namespace SharpTune.Tests.Export;

/// <summary>
/// Qwen3-MoE exported as llama.cpp's qwen3moe: the expert metadata and stacked expert tensors as convert_hf_to_gguf.py's
/// Qwen2MoeModel writes them, the configurations llama.cpp's graph cannot compute refused, and real llama.cpp (its own
/// MoE implementation, llm_build_qwen3moe / build_moe_ffn) giving SharpTune's next-token log-probabilities and greedy
/// tokens on a tiny random model.
/// </summary>
public class GgufMixtureOfExpertsTests
{
    /// <summary>
    /// Qwen3-MoE for llama.cpp: 2 layers, both sparse (llama.cpp's qwen3moe has no dense layers), 4 experts of width 48,
    /// 2 per token, renormalised (llama.cpp always renormalises), hidden 64, heads of 24, vocabulary 512.
    /// </summary>
    private static JsonObject Config(JsonObject? changes = null)
    {
        var config = TestModels.With(TestModels.Qwen3MoeConfigJson(vocab: 512),
            new JsonObject { ["num_hidden_layers"] = 2, ["mlp_only_layers"] = new JsonArray() });
        return changes is null ? config : TestModels.With(config, changes);
    }

    /// <summary>
    /// A random <see cref="Config"/> checkpoint whose routers are drawn with std 1 (the default 0.02 leaves every expert's
    /// probability near 1/4, and a top-2 choice that rounding could flip) and experts with std 0.2, the head with std 0.3 and
    /// the embeddings with std 1 (so that the experts' share of the residual stream, not only its direction, shows in
    /// log-probabilities of order 1); norms perturbed. <paramref name="changes"/> go
    /// into the saved config.json only, so one set of weights serves variants.
    /// </summary>
    private static string Checkpoint(TempDir dir, string label, long seed, JsonObject? changes = null)
    {
        manual_seed(seed);
        using var model = ModelFactory.Create(ModelConfig.FromJson(Config()), ScalarType.Float32);
        using (no_grad())
            foreach (var (name, parameter) in model.named_parameters())
            {
                if (name.Contains("norm")) parameter.add_(randn_like(parameter) * 0.1);
                else if (name.EndsWith("mlp.gate.weight", StringComparison.Ordinal)) parameter.normal_(0, 1.0);
                else if (name.Contains("experts")) parameter.normal_(0, 0.2);
                else if (name == "lm_head.weight") parameter.normal_(0, 0.3);
                else if (name == "model.embed_tokens.weight") parameter.normal_(0, 1.0);
            }
        return SaveFolder(model, dir, label, changes);
    }

    /// <summary>
    /// The keys and tensors convert_hf_to_gguf.py writes for Qwen3MoeForCausalLM (Qwen3MoeModel over Qwen2MoeModel):
    /// qwen3moe.expert_count, expert_used_count and expert_feed_forward_length; mlp.gate → ffn_gate_inp; each projection's
    /// experts stacked in expert order into ffn_{gate,up,down}_exps (numpy shape (E, out, in)). In a Q8_0 file the router
    /// stays F32, as the converter and llama-quantize keep it.
    /// </summary>
    [Fact]
    public void ExpertsAreStackedAndDescribedAsTheConverterWritesThem()
    {
        using var dir = new TempDir();
        var folder = Checkpoint(dir, "moe", seed: 6);
        var file = GgufReader.Open(ExportModel(folder, Path.Combine(dir.Path, "m.gguf"), GgufExportType.F32).Path);
        Assert.Equal("qwen3moe", file.Metadata["general.architecture"].AsString());
        Assert.Equal(4, file.Metadata["qwen3moe.expert_count"].AsInteger());
        Assert.Equal(2, file.Metadata["qwen3moe.expert_used_count"].AsInteger());
        Assert.Equal(48, file.Metadata["qwen3moe.expert_feed_forward_length"].AsInteger());
        Assert.Equal(24, file.Metadata["qwen3moe.attention.key_length"].AsInteger());
        Assert.DoesNotContain(file.Tensors, t => t.Name.EndsWith("ffn_gate.weight", StringComparison.Ordinal));
        var byName = file.Tensors.ToDictionary(t => t.Name);
        // ggml shapes are numpy's reversed: (in, out, E).
        Assert.Equal([64L, 4], byName["blk.1.ffn_gate_inp.weight"].Shape);
        Assert.Equal([64L, 48, 4], byName["blk.0.ffn_gate_exps.weight"].Shape);
        Assert.Equal([64L, 48, 4], byName["blk.0.ffn_up_exps.weight"].Shape);
        Assert.Equal([48L, 64, 4], byName["blk.0.ffn_down_exps.weight"].Shape);
        using var checkpoint = HfCheckpoint.Open(folder);
        float[] Read(string name)
        {
            using var t = checkpoint.Read(name, ScalarType.Float32);
            return t.data<float>().ToArray();
        }
        Assert.Equal(Read("model.layers.1.mlp.gate.weight"), file.ReadFloat32("blk.1.ffn_gate_inp.weight"));
        foreach (var (hf, gguf) in new[] { ("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps"), ("down_proj", "ffn_down_exps") })
            Assert.Equal(Enumerable.Range(0, 4).SelectMany(e => Read($"model.layers.1.mlp.experts.{e}.{hf}.weight")).ToArray(),
                file.ReadFloat32($"blk.1.{gguf}.weight"));

        var quantized = GgufReader.Open(ExportModel(folder, Path.Combine(dir.Path, "q.gguf"), GgufExportType.Q8_0).Path);
        Assert.Equal(GgmlType.F32, quantized.Tensors.Single(t => t.Name == "blk.0.ffn_gate_inp.weight").Type);
        Assert.Equal(GgmlType.Q8_0, quantized.Tensors.Single(t => t.Name == "blk.0.ffn_up_exps.weight").Type);
    }

    /// <summary>llama.cpp's qwen3moe gives every layer the experts and always renormalises the top-k weights.</summary>
    [Theory]
    [InlineData("{\"mlp_only_layers\": [1]}", "layers [1] have a dense MLP")]
    [InlineData("{\"decoder_sparse_step\": 2}", "layers [0] have a dense MLP")]
    [InlineData("{\"norm_topk_prob\": false}", "norm_topk_prob = false")]
    public void ConfigurationsLlamaCppsQwen3MoeCannotComputeAreRefused(string changes, string named)
    {
        using var dir = new TempDir();
        var folder = Path.Combine(dir.Path, "moe");
        manual_seed(2);
        using (var model = ModelFactory.Create(ModelConfig.FromJson(Config(JsonNode.Parse(changes)!.AsObject()))))
            PretrainedModel.Save(model, folder);
        WriteByteLevelTokenizer(folder);
        var output = Path.Combine(dir.Path, "out", "model.gguf");
        var error = Assert.Throws<NotSupportedException>(() => ExportModel(folder, output, GgufExportType.F32));
        Assert.Contains(named, error.Message);
        Assert.False(File.Exists(output));
    }

    /// <summary>
    /// The f32 export run by llama.cpp's own qwen3moe graph: next-token log-probabilities within 1e-4 of SharpTune's forward
    /// on a 17-token prompt, and the same 24 greedy tokens. The same weights with norm_topk_prob off, or with one expert per
    /// token, move SharpTune's log-probabilities by more than 0.05, so agreement means llama.cpp routed, renormalised and
    /// mixed the experts as SharpTune does.
    /// </summary>
    [LlamaCppFact]
    public void Qwen3MoeExportedAsF32MatchesSharpTuneInLlamaCpp()
    {
        using var dir = new TempDir();
        var folder = Checkpoint(dir, "moe", seed: 31);
        int[] prompt = [258 + 1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 32, 84, 104];
        var report = ExportModel(folder, Path.Combine(dir.Path, "moe.gguf"), GgufExportType.F32);
        Assert.Empty(report.Warnings);
        double[] logProbabilities;
        int[] greedy;
        using (var model = PretrainedModel.Load(folder, ScalarType.Float32))
        {
            logProbabilities = LogProbabilities(model, prompt);
            greedy = Greedy(model, prompt, 24);
        }
        foreach (var (variant, changes) in new[]
                 {
                     ("without renormalisation", new JsonObject { ["norm_topk_prob"] = false }),
                     ("top-1", new JsonObject { ["num_experts_per_tok"] = 1 }),
                 })
        {
            using var other = PretrainedModel.Load(Checkpoint(dir, "moe-" + variant.Replace(' ', '-'), seed: 31, changes), ScalarType.Float32);
            var moved = logProbabilities.Zip(LogProbabilities(other, prompt), (a, b) => Math.Abs(a - b)).Max();
            Assert.True(moved > 0.05, $"{variant}: log-probabilities moved by only {moved:G3}, so the comparison would not see it");
        }
        var jobs = new[] { LlamaCppRuntime.Distribution(report.Path, prompt), LlamaCppRuntime.Greedy(report.Path, prompt, 24) };
        foreach (var job in jobs) job["float32"] = true;
        var results = LlamaCppRuntime.Run(jobs);
        var difference = MaxLogProbabilityDifference(logProbabilities, LlamaCppRuntime.Probabilities(results[0], logProbabilities.Length));
        Assert.True(difference < 1e-4, $"qwen3moe: llama.cpp's log-probabilities differ from SharpTune's by up to {difference:G3}");
        var llamaCppGreedy = Ids(results[1], "greedy");
        Assert.True(greedy.SequenceEqual(llamaCppGreedy), $"llama.cpp {string.Join(' ', llamaCppGreedy)}\n  expected {string.Join(' ', greedy)}");
    }
}
