using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Quantization;
using SharpTune.Tests.Models;
using SharpTune.Tokenization;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;
using static TorchSharp.torch;

namespace SharpTune.Tests.Export;

/// <summary>
/// gpt-oss exported as llama.cpp's gpt-oss (LLM_ARCH_OPENAI_MOE), on the fixtures of Models/Fixtures
/// (make_gpt_oss_reference.py, transformers' GptOss written out in plain PyTorch, float64): gpt_oss_tiny (float32 experts,
/// YaRN with truncate = false, a window of 4 on layer 0) and gpt_oss_mxfp4 (the experts as MXFP4 blocks and scales, YaRN
/// with beta_fast 16 and truncate = true, a window of 3 on layers 0 and 2). The files are read back for what
/// convert_hf_to_gguf's GptOssModel writes (ggml-org/llama.cpp@2bbcf7fc, conversion/gpt_oss.py), the MXFP4 experts
/// against the checkpoint's blocks and against ggml's own dequantizer, and run by real llama.cpp (node-llama-cpp's CPU
/// build) against the reference's logits and greedy tokens, SharpTune's f16-rounded model, q8_0 files and a LoRA adapter.
/// </summary>
public class GgufGptOssTests
{
    private static string Fixture(string name) => TestAssets.ModelFixture(name);

    /// <summary>
    /// |Δ log p| allowed between llama.cpp (float32 weights, cache and attention) and the float64 reference where the
    /// experts are written in f32: measured 2.3e-6 and 2.4e-6 on gpt_oss_mxfp4 (dequantized), whose YaRN ramp is truncated
    /// as llama.cpp's always is.
    /// </summary>
    private const double LogProbabilityTolerance = 2e-5;

    /// <summary>
    /// gpt_oss_tiny's config keeps the YaRN ramp's ends unrounded (0.21 and 3.22, truncate = false) where llama.cpp always
    /// rounds them (to 0 and 4): llama.cpp's log-probabilities then differ from EXPECTED.json's by 0.0102 and 0.0223, what
    /// the float64 reference itself moves by with truncate = true, and a near tie flips the 13-token prompt's greedy
    /// tokens. The llama.cpp checks therefore run on a copy whose config says truncate = true, against the reference's
    /// EXPECTED_truncated_ramp.json (the same weights with the rounded ramp), at <see cref="LogProbabilityTolerance"/>.
    /// </summary>
    private static string TruncatedRampTinyCopy(TempDir dir)
    {
        var folder = FixtureCopy(dir, Fixture("gpt_oss_tiny"));
        var configPath = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["rope_scaling"]!["truncate"] = true;
        File.WriteAllText(configPath, config.ToJsonString());
        File.Copy(Path.Combine(Fixture("gpt_oss_tiny"), "EXPECTED_truncated_ramp.json"), Path.Combine(folder, "EXPECTED.json"), overwrite: true);
        return folder;
    }

    /// <summary>
    /// |Δ log p| allowed for files whose experts stay MXFP4 (gpt_oss_mxfp4 at every export type): llama.cpp's CPU MXFP4 dot
    /// product rounds the activations to q8_0 first (MXFP4's vec_dot_type), measured 0.109 and 0.103; the weights
    /// themselves are exact (<see cref="Mxfp4ExpertsAreTheCheckpointsBlocksReadAlikeByGgml"/>).
    /// </summary>
    private const double Mxfp4LogProbabilityTolerance = 0.25;

    /// <summary>|Δ log p| allowed for the q8_0 files (attention, embeddings and float experts in 8 bits).</summary>
    private const double Q8LogProbabilityTolerance = 0.5;

    /// <summary>
    /// The reference's lead over its runner-up below which the q8_0 file's greedy tokens are not compared: the truncated
    /// gpt_oss_tiny's 13-token prompt leads by 0.0045 (the 5-token one by 0.24), a tie 8-bit weights decide either way.
    /// </summary>
    private const double Q8GreedyMinimumLead = 0.01;

    [Fact]
    public void FixturesAreWrittenAsLlamaCppsGptOss()
    {
        using var dir = new TempDir();
        var report = ExportModel(FixtureCopy(dir, Fixture("gpt_oss_tiny")), Path.Combine(dir.Path, "tiny.gguf"), GgufExportType.F32);
        Assert.Equal("gpt-oss", report.Architecture);
        Assert.Contains(report.Warnings, w => w.Contains("truncate = false"));
        var file = GgufReader.Open(report.Path);
        var meta = file.Metadata;
        Assert.Equal("gpt-oss", meta["general.architecture"].AsString());
        Assert.Equal(2, meta["gpt-oss.block_count"].AsInteger());
        Assert.Equal(64, meta["gpt-oss.embedding_length"].AsInteger());
        Assert.Equal(32, meta["gpt-oss.feed_forward_length"].AsInteger());
        Assert.Equal(32, meta["gpt-oss.expert_feed_forward_length"].AsInteger());
        Assert.Equal(4, meta["gpt-oss.expert_count"].AsInteger());
        Assert.Equal(2, meta["gpt-oss.expert_used_count"].AsInteger());
        Assert.Equal(4, meta["gpt-oss.attention.head_count"].AsInteger());
        Assert.Equal(2, meta["gpt-oss.attention.head_count_kv"].AsInteger());
        Assert.Equal(16, meta["gpt-oss.attention.key_length"].AsInteger());
        Assert.Equal(16, meta["gpt-oss.attention.value_length"].AsInteger());
        Assert.Equal(4, meta["gpt-oss.attention.sliding_window"].AsInteger());
        Assert.Equal(10000.0, meta["gpt-oss.rope.freq_base"].AsFloat(), 9);
        Assert.Equal("yarn", meta["gpt-oss.rope.scaling.type"].AsString());
        Assert.Equal(4.0, meta["gpt-oss.rope.scaling.factor"].AsFloat(), 9);
        Assert.Equal(256, meta["gpt-oss.rope.scaling.original_context_length"].AsInteger());
        Assert.Equal(32.0, meta["gpt-oss.rope.scaling.yarn_beta_fast"].AsFloat(), 9);
        Assert.Equal(1.0, meta["gpt-oss.rope.scaling.yarn_beta_slow"].AsFloat(), 9);

        var expected = new List<string> { "token_embd.weight", "output_norm.weight", "output.weight" };
        for (var i = 0; i < 2; i++)
        {
            expected.AddRange(new[] { "attn_norm", "post_attention_norm", "attn_sinks" }.Select(t => $"blk.{i}.{t}.weight"));
            foreach (var t in new[] { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps" })
                expected.AddRange([$"blk.{i}.{t}.weight", $"blk.{i}.{t}.bias"]);
        }
        Assert.Equal(expected.Order(), file.Tensors.Select(t => t.Name).Order());
        // ggml order: [in, out, experts] for the expert matrices, [out, experts] for their biases.
        Assert.Equal([64L, 32L, 4L], file.Tensor("blk.0.ffn_gate_exps.weight").Shape);
        Assert.Equal([64L, 32L, 4L], file.Tensor("blk.0.ffn_up_exps.weight").Shape);
        Assert.Equal([32L, 64L, 4L], file.Tensor("blk.1.ffn_down_exps.weight").Shape);
        Assert.Equal([32L, 4L], file.Tensor("blk.1.ffn_up_exps.bias").Shape);
        Assert.Equal([64L, 4L], file.Tensor("blk.0.ffn_gate_inp.weight").Shape);
        Assert.Equal([4L], file.Tensor("blk.0.attn_sinks.weight").Shape);

        // The fused gate_up_proj (E, C, 2·I): gate is its even columns, up its odd ones, each transposed to (E, I, C).
        using var checkpoint = HfCheckpoint.Open(Fixture("gpt_oss_tiny"));
        using var gateUp = checkpoint.Read("model.layers.1.mlp.experts.gate_up_proj", ScalarType.Float32);
        using var gateUpBias = checkpoint.Read("model.layers.1.mlp.experts.gate_up_proj_bias", ScalarType.Float32);
        var gate = file.ReadFloat32("blk.1.ffn_gate_exps.weight");
        var up = file.ReadFloat32("blk.1.ffn_up_exps.weight");
        var upBias = file.ReadFloat32("blk.1.ffn_up_exps.bias");
        Assert.Equal(gateUp[2, 5, 2 * 7].item<float>(), gate[(2 * 32 + 7) * 64 + 5]);
        Assert.Equal(gateUp[3, 60, 2 * 31 + 1].item<float>(), up[(3 * 32 + 31) * 64 + 60]);
        Assert.Equal(gateUpBias[1, 2 * 9 + 1].item<float>(), upBias[1 * 32 + 9]);

        var mxfp4 = ExportModel(FixtureCopy(dir, Fixture("gpt_oss_mxfp4")), Path.Combine(dir.Path, "mxfp4.gguf"), GgufExportType.F16);
        Assert.Empty(mxfp4.Warnings);
        var packed = GgufReader.Open(mxfp4.Path);
        Assert.Equal(3, packed.Metadata["gpt-oss.attention.sliding_window"].AsInteger());
        Assert.Equal(16.0, packed.Metadata["gpt-oss.rope.scaling.yarn_beta_fast"].AsFloat(), 9);
        Assert.Equal(5000.0, packed.Metadata["gpt-oss.rope.freq_base"].AsFloat(), 9);   // rope_theta inside rope_parameters
        foreach (var t in new[] { "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps" })
            Assert.Equal(GgmlType.MXFP4, packed.Tensor($"blk.2.{t}.weight").Type);   // whatever the export type
        Assert.Equal(GgmlType.F16, packed.Tensor("blk.2.attn_q.weight").Type);
        Assert.Equal(GgmlType.F32, packed.Tensor("blk.2.ffn_gate_inp.weight").Type);
        Assert.Equal([64L, 32L, 4L], packed.Tensor("blk.0.ffn_up_exps.weight").Shape);
        Assert.Equal([32L, 64L, 4L], packed.Tensor("blk.0.ffn_down_exps.weight").Shape);
    }

    /// <summary>
    /// A hand-worked block whose two halves hold different codes, so that swapping ggml's nibbles shows: value v is coded
    /// c(v) = v for v &lt; 16 and 31 − v above. Checkpoint byte k holds values 2k (low nibble) and 2k + 1 (high):
    /// c(2k + 1) · 16 + c(2k). ggml's byte j (block_mxfp4 in ggml-common.h) holds value j in its low nibble and j + 16 in
    /// its high one: c(j + 16) · 16 + c(j) = (15 − j) · 16 + j. The scale byte comes first.
    /// </summary>
    [Fact]
    public void Mxfp4RepackMovesEachCodeToGgmlsPlace()
    {
        static int Code(int value) => value < 16 ? value : 31 - value;
        var blocks = Enumerable.Range(0, 16).Select(k => (byte)((Code(2 * k + 1) << 4) | Code(2 * k))).ToArray();
        var repacked = Mxfp4Blocks.Repack(blocks, [130], slices: 1, rows: 1, groups: 1);
        Assert.Equal(new byte[] { 130 }.Concat(Enumerable.Range(0, 16).Select(j => (byte)(((15 - j) << 4) | j))).ToArray(), repacked);
        // ggml reads code j as kvalues_mxfp4[j] · 2^(e − 128): codes 0–7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6 (times 2^(130 − 127)),
        // 8–15 their negatives; values 16–31 carry codes 15 down to 0.
        var values = new float[32];
        Mxfp4Blocks.Dequantize(repacked, values);
        float[] byCode = [0f, 4f, 8f, 12f, 16f, 24f, 32f, 48f, -0f, -4f, -8f, -12f, -16f, -24f, -32f, -48f];
        Assert.Equal(byCode, values[..16]);
        Assert.Equal(Enumerable.Reverse(byCode).ToArray(), values[16..]);
    }

    /// <summary>
    /// Every MXFP4 expert block of the export is the checkpoint's: the scale byte unchanged and, read by ggml's own
    /// dequantize_row_mxfp4 (libggml-base), exactly the values transformers' layout dequantizes the checkpoint to
    /// (<see cref="Mxfp4.Dequantize"/>, columns 2o and 2o + 1 of gate_up_proj for gate and up row o); SharpTune's own
    /// reader (<see cref="GgmlCodec.Dequantize"/>) reads the same values.
    /// </summary>
    [LlamaCppFact]
    public void Mxfp4ExpertsAreTheCheckpointsBlocksReadAlikeByGgml()
    {
        using var dir = new TempDir();
        var report = ExportModel(FixtureCopy(dir, Fixture("gpt_oss_mxfp4")), Path.Combine(dir.Path, "mxfp4.gguf"), GgufExportType.Q8_0);
        using var checkpoint = HfCheckpoint.Open(Fixture("gpt_oss_mxfp4"));
        for (var layer = 0; layer < 3; layer++)
            foreach (var (gguf, hf, first, step) in new[] { ("ffn_gate_exps", "gate_up_proj", 0, 2), ("ffn_up_exps", "gate_up_proj", 1, 2), ("ffn_down_exps", "down_proj", 0, 1) })
            {
                var name = $"blk.{layer}.{gguf}.weight";
                var (type, data) = GgmlNative.ReadTensor(report.Path, name);
                Assert.Equal(GgmlType.MXFP4, type);
                var prefix = $"model.layers.{layer}.mlp.experts.{hf}";
                using var blocks = checkpoint.Read(prefix + Mxfp4.BlocksSuffix, ScalarType.Byte);   // (E, R, G, 16)
                using var scales = checkpoint.Read(prefix + Mxfp4.ScalesSuffix, ScalarType.Byte);   // (E, R, G)
                using var weight = Mxfp4.Dequantize(blocks, scales, ScalarType.Float32);              // (E, G·32, R)
                var (experts, rows, groups) = (blocks.shape[0], blocks.shape[1], blocks.shape[2]);
                var selected = rows / step;
                Assert.Equal(experts * selected * groups * 17, data.Length);
                var scaleBytes = scales.data<byte>().ToArray();
                var values = GgmlNative.Dequantize(GgmlType.MXFP4, data, experts * selected * groups * 32);
                var ours = new float[values.Length];
                GgmlCodec.Dequantize(GgmlType.MXFP4, data, ours);   // what GgufReader reads back
                Assert.Equal(values, ours);
                var expected = weight.data<float>().ToArray();
                for (long e = 0; e < experts; e++)
                    for (long o = 0; o < selected; o++)
                    {
                        var row = first + o * step;
                        for (long g = 0; g < groups; g++)
                            Assert.Equal(scaleBytes[(e * rows + row) * groups + g], data[((e * selected + o) * groups + g) * 17]);
                        for (long c = 0; c < groups * 32; c++)
                            Assert.Equal(expected[(e * groups * 32 + c) * rows + row], values[(e * selected + o) * groups * 32 + c]);
                    }
            }
    }

    [Fact]
    public void ConfigurationsLlamaCppsGptOssWouldComputeDifferentlyAreRefused()
    {
        var baseConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture("gpt_oss_tiny"), "config.json")))!.AsObject();
        string Refusal(JsonObject changes)
        {
            var config = ModelConfig.FromJson(TestModels.With(baseConfig, changes));
            return Assert.Throws<NotSupportedException>(() => GgufArchitecture.For(config).Check(config)).Message;
        }
        Assert.StartsWith("GptOssForCausalLM: swiglu_alpha 1.702 / swiglu_limit 5 have no llama.cpp gpt-oss equivalent",
            Refusal(new JsonObject { ["swiglu_limit"] = 5.0 }));
        Assert.StartsWith("GptOssForCausalLM: attention_bias = false; llama.cpp's gpt-oss requires biases",
            Refusal(new JsonObject { ["attention_bias"] = false }));
        Assert.StartsWith("GptOssForCausalLM: layer_types [full_attention, sliding_attention] (sliding_window 4) has no llama.cpp gpt-oss equivalent",
            Refusal(new JsonObject { ["layer_types"] = new JsonArray("full_attention", "sliding_attention") }));
        Assert.StartsWith("GptOssForCausalLM: rope_scaling 'linear' has no llama.cpp gpt-oss equivalent",
            Refusal(new JsonObject { ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 } }));
        Assert.Contains("sets attention_factor, mscale or mscale_all_dim",
            Refusal(new JsonObject { ["rope_scaling"] = new JsonObject
            {
                ["rope_type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 256, ["attention_factor"] = 1.5,
            } }));
    }

    /// <summary>
    /// llama.cpp's gpt-oss reads one sliding-window period n (attention.sliding_window_pattern, 2 when absent;
    /// ggml-org/llama.cpp@069be0ae src/models/openai-moe.cpp) and slides layer i where n = 0 or i mod n &lt; n − 1
    /// (llama_hparams::set_swa_pattern, @01b77b57 src/llama-hparams.cpp): the period that gives layer_types is written,
    /// none for gpt-oss's own alternation, and a layout no period gives is refused.
    /// </summary>
    [Fact]
    public void LayerTypesAreWrittenAsLlamaCppsSlidingWindowPeriod()
    {
        var baseConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture("gpt_oss_tiny"), "config.json")))!.AsObject();
        const string S = "sliding_attention", F = "full_attention";
        uint? Period(params string[] types)
        {
            var config = ModelConfig.FromJson(TestModels.With(baseConfig, new JsonObject
            {
                ["num_hidden_layers"] = types.Length, ["layer_types"] = new JsonArray(types.Select(t => (JsonNode?)t).ToArray()),
            }));
            var architecture = GgufArchitecture.For(config);
            architecture.Check(config);
            var metadata = new List<KeyValuePair<string, GgufValue>>();
            architecture.AddHyperParameters(metadata, config);
            return metadata.Where(kv => kv.Key == "gpt-oss.attention.sliding_window_pattern").Select(kv => (uint?)kv.Value.AsInteger()).SingleOrDefault();
        }
        Assert.Null(Period(S, F, S, F, S));
        Assert.Equal(0u, Period(S, S));
        Assert.Equal(1u, Period(F, F, F));
        Assert.Equal(3u, Period(S, S, F, S, S, F, S));
        Assert.Equal(4u, Period(S, S, S, F));
        var refused = Assert.Throws<NotSupportedException>(() => Period(S, F, F, S));
        Assert.Contains("slides layer i where i mod n < n − 1", refused.Message);
    }

    /// <summary>
    /// gpt_oss_tiny with both layers sliding (its ramp truncated as llama.cpp's always is) exports with
    /// attention.sliding_window_pattern 0 and runs in llama.cpp like the float64 reference of that layout
    /// (EXPECTED_all_sliding.json of make_gpt_oss_reference.py, whose logits differ from the sliding/full model's by up to
    /// 0.33): log-probabilities within <see cref="LogProbabilityTolerance"/> and the same greedy tokens.
    /// </summary>
    [LlamaCppFact]
    public void OtherSlidingLayoutsRunInLlamaCppLikeTheReference()
    {
        using var dir = new TempDir();
        var folder = TruncatedRampTinyCopy(dir);
        var configPath = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config["layer_types"] = new JsonArray("sliding_attention", "sliding_attention");
        File.WriteAllText(configPath, config.ToJsonString());
        File.Copy(Path.Combine(Fixture("gpt_oss_tiny"), "EXPECTED_all_sliding.json"), Path.Combine(folder, "EXPECTED.json"), overwrite: true);
        var output = ExportModel(folder, Path.Combine(dir.Path, "all-sliding.gguf"), GgufExportType.F32).Path;
        Assert.Equal(0, GgufReader.Open(output).Metadata["gpt-oss.attention.sliding_window_pattern"].AsInteger());
        var items = new List<(JsonObject Job, Action<JsonObject> Check)>();
        foreach (var c in TransformersExpected.Read(folder))
        {
            var expected = LogSoftmax(c.LastLogits.Select(l => (double)l).ToArray());
            items.Add((Float32(LlamaCppRuntime.Distribution(output, c.InputIds)), result =>
            {
                var difference = MaxLogProbabilityDifference(expected, LlamaCppRuntime.Probabilities(result, expected.Length));
                Assert.True(difference < LogProbabilityTolerance, $"all sliding, prompt of {c.InputIds.Length}: llama.cpp differs by up to {difference:G3}");
            }));
            items.Add((Float32(LlamaCppRuntime.Greedy(output, c.InputIds, c.GreedyIds.Length)),
                result => Assert.Equal(c.GreedyIds, result["greedy"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray())));
        }
        RunAll(items);
    }

    /// <summary>
    /// Both fixtures as f32, f16 and q8_0 files against the reference (gpt_oss_tiny with its ramp truncated, see
    /// <see cref="TruncatedRampTinyCopy"/>, also greedily against SharpTune's f16-rounded model; gpt_oss_mxfp4's MXFP4
    /// experts make llama.cpp round activations, so not there), and gpt_oss_mxfp4
    /// with its experts dequantized to f32 (exported through the merge path with an adapter whose B matrices are zero, which
    /// changes no weight) against the reference at float32 precision: the YaRN betas, windows and sinks as written.
    /// </summary>
    [LlamaCppFact]
    public void FixturesExportedAsF32F16AndQ8_0RunInLlamaCppLikeTheReferenceAndSharpTune()
    {
        using var dir = new TempDir();
        var items = new List<(JsonObject Job, Action<JsonObject> Check)>();
        var tiny = TruncatedRampTinyCopy(dir);
        LlamaCppFixtureChecks.QueueReferenceComparisons(items, "gpt_oss_tiny (truncated ramp)", tiny,
            LlamaCppFixtureChecks.ExportF32F16AndQ8_0(dir, tiny, "tiny"), LogProbabilityTolerance, Q8LogProbabilityTolerance, "the reference's",
            q8GreedyMinimumLead: Q8GreedyMinimumLead);
        RunAll(items);
        LlamaCppFixtureChecks.RunReferenceComparisons(["gpt_oss_mxfp4"], Mxfp4LogProbabilityTolerance, Q8LogProbabilityTolerance, "the reference's",
            compareF16Greedy: false);

        var folder = FixtureCopy(dir, Fixture("gpt_oss_mxfp4"));
        var cases = TransformersExpected.Read(folder);
        var zeroAdapter = Path.Combine(dir.Path, "zero-lora");
        SaveRandomLoraAndGreedyOfMerged(folder, zeroAdapter, cases[0].InputIds, tokens: 1, seed: 1, bScale: 0);
        var dense = ExportModel(folder, Path.Combine(dir.Path, "dense.gguf"), GgufExportType.F32, zeroAdapter).Path;
        Assert.Equal(GgmlType.F32, GgufReader.Open(dense).Tensor("blk.0.ffn_gate_exps.weight").Type);
        items.Clear();
        foreach (var c in cases)
        {
            var expected = LogSoftmax(c.LastLogits.Select(l => (double)l).ToArray());
            items.Add((Float32(LlamaCppRuntime.Distribution(dense, c.InputIds)), result =>
            {
                var difference = MaxLogProbabilityDifference(expected, LlamaCppRuntime.Probabilities(result, expected.Length));
                Assert.True(difference < LogProbabilityTolerance, $"gpt_oss_mxfp4 dequantized, prompt of {c.InputIds.Length}: llama.cpp differs by up to {difference:G3}");
            }));
        }
        RunAll(items);
    }

    /// <summary>
    /// A LoRA adapter on the attention projections (gpt-oss's linear layers; the experts and router are fused parameters)
    /// applied by llama.cpp, and merged into the export, decodes as SharpTune's merged model, on gpt_oss_tiny (float
    /// experts: gpt_oss_mxfp4's MXFP4 experts make llama.cpp round activations, see <see cref="Mxfp4LogProbabilityTolerance"/>).
    /// </summary>
    [LlamaCppFact]
    public void LoraAdaptersAppliedByLlamaCppDecodeLikeTheMergedModel()
    {
        using var dir = new TempDir();
        var items = new List<(JsonObject Job, Action<JsonObject> Check)>();
        var lora = LlamaCppFixtureChecks.QueueLoraComparisons(items, dir, "gpt_oss_tiny", TruncatedRampTinyCopy(dir), seed: 47);
        Assert.Equal("gpt-oss", lora.Architecture);
        var names = GgufReader.Open(lora.Path).Tensors.Select(t => t.Name).ToList();
        foreach (var target in new[] { "attn_q", "attn_k", "attn_v", "attn_output" })
            Assert.Contains($"blk.1.{target}.weight.lora_b", names);
        RunAll(items);
    }

    /// <summary>
    /// LoRA on the experts' fused parameters (target_parameters gate_up_proj and down_proj, beside q_proj and o_proj),
    /// B drawn at random: gguf-lora writes per-expert 3-D tensors on ffn_gate_exps, ffn_up_exps and ffn_down_exps
    /// (lora_a [in, r, E] = A_e, lora_b [r, out, E] = B_e, gate_up's B split into its even and odd rows as the weight is),
    /// which llama.cpp applies through build_lora_mm_id; llama.cpp with that adapter on the f32 base, and the f32 export
    /// with the adapter merged (`export gguf --adapter`), give SharpTune's merged model's next-token log-probabilities
    /// within <see cref="LogProbabilityTolerance"/> and its greedy tokens (float32 weights, cache and attention).
    /// </summary>
    [LlamaCppFact]
    public void ExpertLoraAppliedByLlamaCppAndMergedIntoTheExportDecodesLikeTheMergedModel()
    {
        using var dir = new TempDir();
        var folder = TruncatedRampTinyCopy(dir);
        var prompt = TransformersExpected.Read(folder)[^1].InputIds;
        var adapterDir = Path.Combine(dir.Path, "expert-lora");
        double[] expected;
        int[] expectedGreedy;
        using (var model = PretrainedModel.Load(folder, ScalarType.Float32))
        {
            var adapter = new SharpTune.Peft.Lora.LoraAdapter(new SharpTune.Peft.Lora.LoraConfig
            {
                R = 4, LoraAlpha = 8, LoraDropout = 0, TargetModules = SharpTune.Peft.TargetModules.Names("q_proj", "o_proj"),
                TargetParameters = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
            });
            manual_seed(53);
            adapter.Inject(model);
            using (no_grad())
                foreach (var (key, tensor) in adapter.AdapterStateDict())
                    if (key.Contains("lora_B")) tensor.copy_(randn_like(tensor) * 0.5);
            SharpTune.Peft.PeftAdapters.Save(adapter, adapterDir, folder);
            adapter.MergeAndUnload();
            using (no_grad())
            using (var logits = model.Forward(tensor(prompt.Select(t => (long)t).ToArray()).unsqueeze(0)))
                expected = LogSoftmax(logits[0, -1].to(ScalarType.Float64).data<double>().ToArray());
            expectedGreedy = Greedy(model, prompt, 24);
        }
        var basePath = ExportModel(folder, Path.Combine(dir.Path, "base.gguf"), GgufExportType.F32).Path;
        var lora = GgufLoraExporter.Export(new GgufLoraExportOptions { AdapterDir = adapterDir, ModelDir = folder, OutputPath = Path.Combine(dir.Path, "lora.gguf") });
        var file = GgufReader.Open(lora.Path);
        // ggml order: lora_a [in, r, E], lora_b [r, out, E]; gate and up each take I = 32 of gate_up's 64 outputs.
        Assert.Equal([64L, 4L, 4L], file.Tensor("blk.1.ffn_gate_exps.weight.lora_a").Shape);
        Assert.Equal([4L, 32L, 4L], file.Tensor("blk.1.ffn_up_exps.weight.lora_b").Shape);
        Assert.Equal([32L, 4L, 4L], file.Tensor("blk.0.ffn_down_exps.weight.lora_a").Shape);
        Assert.Equal([4L, 64L, 4L], file.Tensor("blk.0.ffn_down_exps.weight.lora_b").Shape);
        Assert.Contains("blk.0.attn_q.weight.lora_b", file.Tensors.Select(t => t.Name));
        // Hand-indexed: up's lora_b for expert 3, output row 5, rank 1 is PEFT's lora_B[2·5 + 1, 1·E + 3].
        using (var checkpoint = HfCheckpoint.Open(Path.Combine(adapterDir, "adapter_model.safetensors")))
        using (var b = checkpoint.Read("base_model.model.model.layers.1.mlp.experts.base_layer.lora_B.weight", ScalarType.Float32))
            Assert.Equal(b[2 * 5 + 1, 1 * 4 + 3].item<float>(), file.ReadFloat32("blk.1.ffn_up_exps.weight.lora_b")[(3 * 32 + 5) * 4 + 1]);
        var mergedPath = ExportModel(folder, Path.Combine(dir.Path, "merged.gguf"), GgufExportType.F32, adapterDir).Path;

        var items = new List<(JsonObject Job, Action<JsonObject> Check)>();
        foreach (var (what, job) in new[]
                 {
                     ("base + expert LoRA GGUF", WithLora(LlamaCppRuntime.Distribution(basePath, prompt), lora.Path)),
                     ("merged export", LlamaCppRuntime.Distribution(mergedPath, prompt)),
                 })
            items.Add((Float32(job), result =>
            {
                var difference = MaxLogProbabilityDifference(expected, LlamaCppRuntime.Probabilities(result, expected.Length));
                Assert.True(difference < LogProbabilityTolerance, $"{what}: llama.cpp's log-probabilities differ from SharpTune's merged model by up to {difference:G3}");
            }));
        items.Add((Float32(LlamaCppRuntime.Greedy(basePath, prompt, 24, lora.Path)), result => AssertSameIds("base + expert LoRA GGUF", expectedGreedy, Ids(result, "greedy"))));
        items.Add((Float32(LlamaCppRuntime.Greedy(mergedPath, prompt, 24)), result => AssertSameIds("merged export", expectedGreedy, Ids(result, "greedy"))));
        // The adapter changes what the model predicts: the base alone differs from the merged model.
        items.Add((Float32(LlamaCppRuntime.Distribution(basePath, prompt)), result =>
            Assert.True(MaxLogProbabilityDifference(expected, LlamaCppRuntime.Probabilities(result, expected.Length)) > 100 * LogProbabilityTolerance,
                "the base alone decodes like the merged model: the adapter changes nothing to compare")));
        RunAll(items);
    }

    /// <summary>
    /// LoRA on down_proj alone (no target_modules; PEFT saves its factors under …mlp.experts.lora_A.weight, no base_layer):
    /// gguf-lora writes per layer exactly ffn_down_exps' lora_a [in, r, E], PEFT's A viewed (E, r, in) byte for byte, and
    /// lora_b [r, out, E] with expert e's B_e (out, r) = lora_B's columns e, e + E … (hand-indexed below), nothing dropped.
    /// </summary>
    [Fact]
    public void ExpertLoraOnOneParameterIsWrittenPerExpertWithNothingDropped()
    {
        using var dir = new TempDir();
        var folder = FixtureCopy(dir, Fixture("gpt_oss_tiny"));
        var adapterDir = Path.Combine(dir.Path, "down-lora");
        using (var model = PretrainedModel.Load(folder, ScalarType.Float32))
        {
            var adapter = new SharpTune.Peft.Lora.LoraAdapter(new SharpTune.Peft.Lora.LoraConfig
            {
                R = 2, LoraAlpha = 4, LoraDropout = 0, TargetParameters = ["down_proj"], InitLoraWeights = SharpTune.Peft.Lora.LoraInit.Random,
            });
            adapter.Inject(model);
            SharpTune.Peft.PeftAdapters.Save(adapter, adapterDir, folder);
        }
        var lora = GgufLoraExporter.Export(new GgufLoraExportOptions { AdapterDir = adapterDir, ModelDir = folder, OutputPath = Path.Combine(dir.Path, "down.gguf") });
        var file = GgufReader.Open(lora.Path);
        Assert.Equal(new[] { 0, 1 }.SelectMany(l => new[] { $"blk.{l}.ffn_down_exps.weight.lora_a", $"blk.{l}.ffn_down_exps.weight.lora_b" }).Order(),
            file.Tensors.Select(t => t.Name).Order());
        Assert.Equal([32L, 2L, 4L], file.Tensor("blk.1.ffn_down_exps.weight.lora_a").Shape);
        Assert.Equal([2L, 64L, 4L], file.Tensor("blk.1.ffn_down_exps.weight.lora_b").Shape);
        Assert.Equal(4.0, file.Metadata["adapter.lora.alpha"].AsFloat(), 9);
        using var checkpoint = HfCheckpoint.Open(Path.Combine(adapterDir, "adapter_model.safetensors"));
        using var a = checkpoint.Read("base_model.model.model.layers.1.mlp.experts.lora_A.weight", ScalarType.Float32);
        using var b = checkpoint.Read("base_model.model.model.layers.1.mlp.experts.lora_B.weight", ScalarType.Float32);
        Assert.Equal(a.data<float>().ToArray(), file.ReadFloat32("blk.1.ffn_down_exps.weight.lora_a"));
        var writtenB = file.ReadFloat32("blk.1.ffn_down_exps.weight.lora_b");
        // expert 2, output 10, rank 1: lora_B[10, 1·E + 2] at ((e·out) + o)·r + j.
        Assert.Equal(b[10, 1 * 4 + 2].item<float>(), writtenB[(2 * 64 + 10) * 2 + 1]);
        Assert.Equal(b[63, 0 * 4 + 3].item<float>(), writtenB[(3 * 64 + 63) * 2 + 0]);
    }

    private static JsonObject WithLora(JsonObject job, string lora)
    {
        job["lora"] = lora;
        return job;
    }

    /// <summary>
    /// gpt-oss's tokenizer splits text with o200k's pattern, llama.cpp's pre-tokenizer "gpt-4o": Llama 3's byte-level
    /// vocabulary given that pattern (and no ignore_merges) exports with tokenizer.ggml.pre "gpt-4o" and the warning
    /// about llama.cpp's approximation of it (<see cref="LlamaCppSplitsO200kAsItsRewrittenPatternNotAsHuggingFace"/>),
    /// and llama.cpp tokenizes mixed-case ASCII words, contractions, digits, CJK, emoji, code and these Thai, Arabic and
    /// Latin words as SharpTune's tokenizer does. Devanagari is left out here: its vowel signs and virama are combining
    /// marks, where llama.cpp's split differs.
    /// </summary>
    [LlamaCppFact("tokenizers")]
    public void TheO200kPreTokenizerIsWrittenAsGpt4oAndTokenizesInLlamaCppAsSharpTune()
    {
        string[] texts =
        [
            "Hello World", "HelloWorld camelCase XMLHttpRequest", "I'M sure THEY'LL say it's 12345678 or 3.14", "line\n/path\r\n/x",
            "日本語のテキスト、中文文本", "emoji 👨‍👩‍👧 done", "def f(x):\n    return x**2  # code", "ภาษาไทย مرحبا Ñandú",
        ];
        using var dir = new TempDir();
        var (output, warnings, tokenizer) = ExportLlama3VocabularyWithPattern(dir, O200kPattern);
        Assert.Equal("gpt-4o", GgufReader.Open(output).Metadata["tokenizer.ggml.pre"].AsString());
        Assert.Contains(GgufVocabulary.O200kDivergenceWarning, warnings);
        var llamaIds = LlamaCppRuntime.Run([LlamaCppRuntime.Tokenize(output, texts)])[0]["tokens"]!.AsArray();
        for (var t = 0; t < texts.Length; t++)
        {
            var expected = tokenizer.Encode(texts[t]);
            var actual = llamaIds[t]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
            Assert.True(expected.SequenceEqual(actual), $"{texts[t]}: llama.cpp {string.Join(' ', actual)}\n  SharpTune {string.Join(' ', expected)}");
        }
    }

    /// <summary>
    /// What <see cref="GgufVocabulary.O200kDivergenceWarning"/> says, shown by llama.cpp itself: its gpt-4o pre-tokenizer
    /// runs the rewritten pattern of llama-vocab.cpp (ggml-org/llama.cpp@00ad355e, LLAMA_VOCAB_PRE_TYPE_GPT4O) on text whose
    /// non-ASCII letters unicode.cpp (@0c4093cc) collapses to one class, so "привет|Мир" and "é|É" are not split at the
    /// case change, and " नमस्ते" is split at its combining marks (virama, vowel sign), which o200k's \p{M} keeps in the
    /// word. Llama 3's vocabulary gets one more merge per text, joining the tokens on either side of that boundary as the
    /// finer of the two splits tokenizes them, so that whichever side keeps the boundary inside one word must give a token
    /// across it: llama.cpp's ids then differ from SharpTune's (Hugging Face's split) and equal SharpTune's tokenizer given
    /// llama.cpp's rewritten pattern.
    /// </summary>
    [LlamaCppFact("tokenizers")]
    public void LlamaCppSplitsO200kAsItsRewrittenPatternNotAsHuggingFace()
    {
        // Each text with the boundary where one split ends a word and the other does not, and which side splits there.
        (string Left, string Right, bool HuggingFaceSplits)[] cases =
            [("привет", "Мир", true), ("é", "É", true), (" नमस", "्ते", false)];
        using var dir = new TempDir();
        var (_, _, o200kBase) = ExportLlama3VocabularyWithPattern(dir, O200kPattern, export: false);
        var (_, _, rewrittenBase) = ExportLlama3VocabularyWithPattern(dir, LlamaCppGpt4oPattern, export: false);
        var merges = cases.Select(c =>
        {
            var finer = c.HuggingFaceSplits ? o200kBase : rewrittenBase;
            return (finer.IdToToken(finer.Encode(c.Left)[^1])!, finer.IdToToken(finer.Encode(c.Right)[0])!);
        }).ToList();
        var (output, _, o200k) = ExportLlama3VocabularyWithPattern(dir, O200kPattern, extraMerges: merges);
        var (_, _, rewritten) = ExportLlama3VocabularyWithPattern(dir, LlamaCppGpt4oPattern, export: false, extraMerges: merges);
        var texts = cases.Select(c => c.Left + c.Right).ToArray();
        var llamaIds = LlamaCppRuntime.Run([LlamaCppRuntime.Tokenize(output, texts)])[0]["tokens"]!.AsArray();
        for (var t = 0; t < texts.Length; t++)
        {
            var actual = llamaIds[t]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
            var huggingFace = o200k.Encode(texts[t]);
            var predicted = rewritten.Encode(texts[t]);
            var message = $"{texts[t]}: llama.cpp {string.Join(' ', actual)}\n  rewritten pattern {string.Join(' ', predicted)}\n  o200k {string.Join(' ', huggingFace)}";
            Assert.False(huggingFace.SequenceEqual(actual), message);
            Assert.True(predicted.SequenceEqual(actual), message);
        }
    }

    /// <summary>
    /// Llama 3's byte-level vocabulary (../shared/tokenizers/llama3) with its Split pattern replaced by
    /// <paramref name="pattern"/>, ignore_merges off and <paramref name="extraMerges"/> appended (each with a new token),
    /// on a tiny random Llama; exported as f32 unless <paramref name="export"/> is false.
    /// </summary>
    private static (string Path, IReadOnlyList<string> Warnings, HfTokenizer Tokenizer) ExportLlama3VocabularyWithPattern(
        TempDir dir, string pattern, bool export = true, IReadOnlyList<(string Left, string Right)>? extraMerges = null)
    {
        extraMerges ??= [];
        var source = Path.Combine(TestAssets.SharedDir, "tokenizers", "llama3");
        var probe = HfTokenizer.FromDirectory(source);
        var config = TestModels.With(TestModels.LlamaConfigJson(vocab: probe.IdCount + extraMerges.Count, tied: true), new JsonObject
        {
            ["hidden_size"] = 8, ["intermediate_size"] = 16, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 2, ["num_key_value_heads"] = 2,
            ["bos_token_id"] = null, ["eos_token_id"] = null,
        });
        var name = $"pattern{Directory.GetDirectories(dir.Path).Length}";
        var folder = RandomCheckpoint(dir, name, config, seed: 1);
        foreach (var file in Directory.GetFiles(source).Where(f => Path.GetFileName(f).StartsWith("tokenizer", StringComparison.Ordinal)))
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)), overwrite: true);
        var tokenizerPath = Path.Combine(folder, "tokenizer.json");
        var root = JsonNode.Parse(File.ReadAllText(tokenizerPath))!.AsObject();
        root["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = pattern;
        root["model"]!["ignore_merges"] = false;
        for (var m = 0; m < extraMerges.Count; m++)
        {
            root["model"]!["merges"]!.AsArray().Add($"{extraMerges[m].Left} {extraMerges[m].Right}");
            root["model"]!["vocab"]![extraMerges[m].Left + extraMerges[m].Right] = probe.IdCount + m;
        }
        File.WriteAllText(tokenizerPath, root.ToJsonString());
        var tokenizer = HfTokenizer.FromDirectory(folder);
        if (!export) return ("", [], tokenizer);
        var report = ExportModel(folder, Path.Combine(dir.Path, name + ".gguf"), GgufExportType.F32);
        return (report.Path, report.Warnings, tokenizer);
    }

    // The Split pattern of gpt-oss's (and GPT-4o's) tokenizer.json, as ggml-org/llama.cpp's llama-vocab.cpp quotes it.
    private const string O200kPattern =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|" +
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|" +
        @"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // llama.cpp's gpt-4o pattern (ggml-org/llama.cpp@00ad355e, src/llama-vocab.cpp): o200k's with each letter class
    // rewritten as a letter that is not a–z (or not A–Z) and no \p{M}; .NET matches it on the raw text as llama.cpp does
    // on its collapsed text, where every non-ASCII letter is one code outside a–z and A–Z.
    private const string LlamaCppGpt4oPattern =
        @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|" +
        @"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|" +
        @"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
}
