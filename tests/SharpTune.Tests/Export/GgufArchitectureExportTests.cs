using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.IO;
using SharpTune.Models;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// What the Granite, OLMo 2, Gemma 1, 2 and 3, Phi-3 and SmolLM3 exports write, read back from the file and checked against hand-worked values
/// and the checkpoint, and the configurations llama.cpp cannot run refused before a file exists.
/// </summary>
public class GgufArchitectureExportTests
{
    [Fact]
    public void Gemma3StoresOnePlusEachNormWeightAndItsWindowPattern()
    {
        using var dir = new TempDir();
        var folder = ReferenceCopy(dir, "gemma3_pattern", "gemma3");
        var path = ExportModel(folder, Path.Combine(dir.Path, "g.gguf"), GgufExportType.F32).Path;
        var file = GgufReader.Open(path);
        Assert.Equal("gemma3", file.Metadata["general.architecture"].AsString());
        // layer_types slide, slide, full, slide, slide, full: llama.cpp's set_swa_pattern(3).
        Assert.Equal(3, file.Metadata["gemma3.attention.sliding_window_pattern"].AsInteger());
        Assert.Equal(8, file.Metadata["gemma3.attention.sliding_window"].AsInteger());
        Assert.Equal(10000f, file.Metadata["gemma3.rope.freq_base_swa"].AsFloat());
        Assert.Equal(1_000_000f, file.Metadata["gemma3.rope.freq_base"].AsFloat());
        Assert.Equal(16, file.Metadata["gemma3.attention.key_length"].AsInteger());
        Assert.Equal(1, file.Metadata["gemma3.attention.head_count_kv"].AsInteger());
        Assert.DoesNotContain(file.Tensors, t => t.Name == "output.weight");   // tied: llama.cpp reuses token_embd
        using var checkpoint = HfCheckpoint.Open(folder);
        foreach (var (hf, gguf) in new[]
                 {
                     ("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"),
                     ("model.layers.4.self_attn.k_norm.weight", "blk.4.attn_k_norm.weight"),
                     ("model.layers.5.pre_feedforward_layernorm.weight", "blk.5.ffn_norm.weight"),
                     ("model.layers.1.post_feedforward_layernorm.weight", "blk.1.post_ffw_norm.weight"),
                     ("model.norm.weight", "output_norm.weight"),
                 })
        {
            using var weight = checkpoint.Read(hf, TorchSharp.torch.ScalarType.Float32);
            Assert.Equal(weight.data<float>().Select(w => w + 1f).ToArray(), file.ReadFloat32(gguf));
        }
        using var query = checkpoint.Read("model.layers.2.self_attn.q_proj.weight", TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(query.data<float>().ToArray(), file.ReadFloat32("blk.2.attn_q.weight"));   // NEOX RoPE: rows kept
    }

    /// <summary>
    /// Gemma 2 as convert_hf_to_gguf.py's Gemma2Model writes it (llama.cpp@5c880d9): gemma2.attn_logit_softcapping,
    /// gemma2.final_logit_softcapping and gemma2.attention.sliding_window from the config, head_dim as key/value length,
    /// the same layer tensors as Gemma 3 without q/k norms, every norm weight stored as 1 + w, no output.weight (tied).
    /// </summary>
    [Fact]
    public void Gemma2WritesItsSoftCapsAndWindowAndOnePlusEachNormWeight()
    {
        using var dir = new TempDir();
        var folder = Gemma2Checkpoint(dir, "gemma2", seed: 4);
        var file = GgufReader.Open(ExportModel(folder, Path.Combine(dir.Path, "g.gguf"), GgufExportType.F32).Path);
        Assert.Equal("gemma2", file.Metadata["general.architecture"].AsString());
        Assert.Equal(2f, file.Metadata["gemma2.attn_logit_softcapping"].AsFloat());
        Assert.Equal(0.1f, file.Metadata["gemma2.final_logit_softcapping"].AsFloat());
        Assert.Equal(8, file.Metadata["gemma2.attention.sliding_window"].AsInteger());
        Assert.Equal(16, file.Metadata["gemma2.attention.key_length"].AsInteger());
        Assert.Equal(16, file.Metadata["gemma2.attention.value_length"].AsInteger());
        Assert.Equal(4, file.Metadata["gemma2.block_count"].AsInteger());
        Assert.Equal(10000f, file.Metadata["gemma2.rope.freq_base"].AsFloat());
        Assert.DoesNotContain(file.Tensors, t => t.Name == "output.weight" || t.Name.Contains("attn_q_norm") || t.Name.Contains("attn_k_norm"));
        Assert.Equal(2 + 4 * 11, file.Tensors.Count);   // token_embd, output_norm, 11 per layer
        using var checkpoint = HfCheckpoint.Open(folder);
        foreach (var (hf, gguf) in new[]
                 {
                     ("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"),
                     ("model.layers.1.post_attention_layernorm.weight", "blk.1.post_attention_norm.weight"),
                     ("model.layers.2.pre_feedforward_layernorm.weight", "blk.2.ffn_norm.weight"),
                     ("model.layers.3.post_feedforward_layernorm.weight", "blk.3.post_ffw_norm.weight"),
                     ("model.norm.weight", "output_norm.weight"),
                 })
        {
            using var weight = checkpoint.Read(hf, TorchSharp.torch.ScalarType.Float32);
            Assert.Equal(weight.data<float>().Select(w => w + 1f).ToArray(), file.ReadFloat32(gguf));
        }
        using var key = checkpoint.Read("model.layers.2.self_attn.k_proj.weight", TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(key.data<float>().ToArray(), file.ReadFloat32("blk.2.attn_k.weight"));   // NEOX RoPE: rows kept
    }

    /// <summary>
    /// Granite as convert_hf_to_gguf.py's GraniteModel (a LlamaModel) writes it (ggml-org/llama.cpp@a458664): the
    /// multipliers renamed to granite.attention.scale, embedding_scale, residual_scale and logit_scale, the Llama keys, and
    /// Q/K rows permuted for llama.cpp's interleaved RoPE.
    /// </summary>
    [Fact]
    public void GraniteWritesItsMultipliersUnderLlamaCppsNamesAndPermutesQueryRows()
    {
        using var dir = new TempDir();
        var folder = RandomCheckpoint(dir, "granite", GraniteConfig(), seed: 5);
        var file = GgufReader.Open(ExportModel(folder, Path.Combine(dir.Path, "g.gguf"), GgufExportType.F32).Path);
        Assert.Equal("granite", file.Metadata["general.architecture"].AsString());
        Assert.Equal(0.0625f, file.Metadata["granite.attention.scale"].AsFloat());
        Assert.Equal(12f, file.Metadata["granite.embedding_scale"].AsFloat());
        Assert.Equal(0.22f, file.Metadata["granite.residual_scale"].AsFloat());
        Assert.Equal(8f, file.Metadata["granite.logit_scale"].AsFloat());
        Assert.Equal(512, file.Metadata["granite.vocab_size"].AsInteger());
        Assert.Equal(16, file.Metadata["granite.rope.dimension_count"].AsInteger());
        Assert.DoesNotContain(file.Tensors, t => t.Name == "output.weight");   // tied
        using var checkpoint = HfCheckpoint.Open(folder);
        using var query = checkpoint.Read("model.layers.1.self_attn.q_proj.weight", TorchSharp.torch.ScalarType.Float32);
        // Head 0's second row in the file is its row 8 (of 16) in transformers' rotate-half order.
        Assert.Equal(query.data<float>().Skip(8 * 64).Take(64).ToArray(), file.ReadFloat32("blk.1.attn_q.weight").Skip(64).Take(64).ToArray());
    }

    /// <summary>
    /// OLMo 2 as convert_hf_to_gguf.py's Olmo2Model writes it: the norms after the blocks as post_attention_norm and
    /// post_ffw_norm, the whole-width q/k norms as attn_q_norm (64 wide) and attn_k_norm (32), weights unchanged (no
    /// 1 + w, no Q/K permutation), no attn_norm or ffn_norm, and the untied head.
    /// </summary>
    [Fact]
    public void Olmo2WritesPostNormsAndWholeWidthQueryKeyNormsUnchanged()
    {
        using var dir = new TempDir();
        var folder = RandomCheckpoint(dir, "olmo2", Olmo2Config(), seed: 6);
        var file = GgufReader.Open(ExportModel(folder, Path.Combine(dir.Path, "o.gguf"), GgufExportType.F32).Path);
        Assert.Equal("olmo2", file.Metadata["general.architecture"].AsString());
        Assert.Equal(500000f, file.Metadata["olmo2.rope.freq_base"].AsFloat());
        Assert.Equal(1e-6f, file.Metadata["olmo2.attention.layer_norm_rms_epsilon"].AsFloat());
        Assert.DoesNotContain(file.Tensors, t => t.Name.Contains("attn_norm") || t.Name.Contains("ffn_norm"));
        Assert.Equal(3 + 4 * 11, file.Tensors.Count);   // token_embd, output_norm, output, 11 per layer
        using var checkpoint = HfCheckpoint.Open(folder);
        foreach (var (hf, gguf, width) in new[]
                 {
                     ("model.layers.0.post_attention_layernorm.weight", "blk.0.post_attention_norm.weight", 64),
                     ("model.layers.3.post_feedforward_layernorm.weight", "blk.3.post_ffw_norm.weight", 64),
                     ("model.layers.1.self_attn.q_norm.weight", "blk.1.attn_q_norm.weight", 64),
                     ("model.layers.2.self_attn.k_norm.weight", "blk.2.attn_k_norm.weight", 32),
                     ("model.layers.2.self_attn.k_proj.weight", "blk.2.attn_k.weight", 32 * 64),   // NEOX RoPE: rows kept
                     ("lm_head.weight", "output.weight", 512 * 64),
                 })
        {
            using var weight = checkpoint.Read(hf, TorchSharp.torch.ScalarType.Float32);
            Assert.Equal(width, (int)weight.numel());
            Assert.Equal(weight.data<float>().ToArray(), file.ReadFloat32(gguf));
        }
    }

    /// <summary>
    /// Gemma 1 as convert_hf_to_gguf.py's GemmaModel writes it: head_dim as key/value length, Llama's two norms a layer
    /// stored as 1 + w, no output.weight (tied); the exact GELU that google/gemma-2b's config names is exported with a
    /// warning, llama.cpp's gemma computing the tanh approximation the model was trained with.
    /// </summary>
    [Fact]
    public void GemmaStoresOnePlusEachNormWeightAndWarnsAboutTheExactGelu()
    {
        using var dir = new TempDir();
        var folder = RandomCheckpoint(dir, "gemma", GemmaConfig(), seed: 7);
        var report = ExportModel(folder, Path.Combine(dir.Path, "g.gguf"), GgufExportType.F32);
        Assert.Empty(report.Warnings);
        var file = GgufReader.Open(report.Path);
        Assert.Equal("gemma", file.Metadata["general.architecture"].AsString());
        Assert.Equal(16, file.Metadata["gemma.attention.key_length"].AsInteger());
        Assert.Equal(1, file.Metadata["gemma.attention.head_count_kv"].AsInteger());
        Assert.Equal(2 + 4 * 9, file.Tensors.Count);   // token_embd, output_norm, 9 per layer
        using var checkpoint = HfCheckpoint.Open(folder);
        foreach (var (hf, gguf) in new[]
                 {
                     ("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"),
                     ("model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight"),
                     ("model.norm.weight", "output_norm.weight"),
                 })
        {
            using var weight = checkpoint.Read(hf, TorchSharp.torch.ScalarType.Float32);
            Assert.Equal(weight.data<float>().Select(w => w + 1f).ToArray(), file.ReadFloat32(gguf));
        }

        var exact = RandomCheckpoint(dir, "gemma-gelu", TestModels.With(GemmaConfig(), new JsonObject { ["hidden_act"] = "gelu" }), seed: 7);
        var warned = ExportModel(exact, Path.Combine(dir.Path, "exact.gguf"), GgufExportType.F32);
        Assert.Contains(warned.Warnings, w => w.Contains("tanh-approximated GELU") && w.Contains("\"gelu\""));
    }

    [Fact]
    public void Phi3KeepsFusedProjectionsAndWritesLongRopeFactors()
    {
        using var dir = new TempDir();
        var folder = ReferenceCopy(dir, "phi3_mini", "phi3", GgufArchitectureInteropTests.Phi3LongRope());
        var report = ExportModel(folder, Path.Combine(dir.Path, "p.gguf"), GgufExportType.F32);
        var file = GgufReader.Open(report.Path);
        Assert.Equal("phi3", file.Metadata["general.architecture"].AsString());
        Assert.Equal(8, file.Metadata["phi3.rope.dimension_count"].AsInteger());          // 16 × 0.5
        Assert.Equal(4096, file.Metadata["phi3.rope.scaling.original_context_length"].AsInteger());
        Assert.Equal(8192, file.Metadata["phi3.context_length"].AsInteger());
        // Scale 8192 / 4096 = 2: √(1 + ln 2 / ln 4096) = √(1 + 1/12).
        Assert.Equal(Math.Sqrt(13.0 / 12.0), file.Metadata["phi3.rope.scaling.attn_factor"].AsFloat(), 6);
        Assert.Equal([1f, 1.25f, 1.5f, 2f], file.ReadFloat32("rope_factors_short.weight"));
        Assert.Equal([1f, 4f, 16f, 64f], file.ReadFloat32("rope_factors_long.weight"));
        Assert.Equal(0, file.Metadata["phi3.attention.sliding_window"].AsInteger());
        // ggml shapes are [columns, rows]: qkv_proj 3 × 64 rows, gate_up_proj 2 × 128 rows, both over 64 inputs.
        Assert.Equal([64L, 192L], file.Tensor("blk.0.attn_qkv.weight").Shape);
        Assert.Equal([64L, 256L], file.Tensor("blk.3.ffn_up.weight").Shape);
        using var checkpoint = HfCheckpoint.Open(folder);
        using var gateUp = checkpoint.Read("model.layers.3.mlp.gate_up_proj.weight", TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(gateUp.data<float>().ToArray(), file.ReadFloat32("blk.3.ffn_up.weight"));
        Assert.Contains(report.Warnings, w => w.Contains("LongRoPE"));
        Assert.Contains("output.weight", file.Tensors.Select(t => t.Name));                 // untied head
    }

    [Fact]
    public void SmolLM3IsWrittenAsLlamaCppsSmolLM3WithPermutedQueries()
    {
        using var dir = new TempDir();
        var folder = RandomCheckpoint(dir, "smollm3", GgufArchitectureInteropTests.SmolLM3Config(), seed: 5);
        var file = GgufReader.Open(ExportModel(folder, Path.Combine(dir.Path, "s.gguf"), GgufExportType.F32).Path);
        Assert.Equal("smollm3", file.Metadata["general.architecture"].AsString());
        Assert.Equal(16, file.Metadata["smollm3.rope.dimension_count"].AsInteger());
        using var checkpoint = HfCheckpoint.Open(folder);
        using var query = checkpoint.Read("model.layers.1.self_attn.q_proj.weight", TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(LlamaFamilyGguf.PermuteRows(query.data<float>().ToArray(), [64, 64], heads: 4), file.ReadFloat32("blk.1.attn_q.weight"));
    }

    public static TheoryData<string, JsonObject, string> Refused => new()
    {
        // llama.cpp's smollm3 hard-codes NoPE on every fourth layer.
        { "smollm3", new JsonObject { ["no_rope_layers"] = new JsonArray(1, 0, 1, 1) }, "no_rope_layers" },
        // llama.cpp's gemma3 scales attention by 1/√head_dim (16) and has no attention soft-capping.
        { "gemma3_pattern", new JsonObject { ["query_pre_attn_scalar"] = 20 }, "query_pre_attn_scalar" },
        { "gemma3_pattern", new JsonObject { ["attn_logit_softcapping"] = 50.0 }, "attn_logit_softcapping" },
        {
            "gemma3_pattern", new JsonObject
            {
                ["layer_types"] = new JsonArray("sliding_attention", "full_attention", "full_attention", "sliding_attention", "sliding_attention", "full_attention"),
            },
            "layer_types"
        },
        // OLMo 2 in llama.cpp has no attention biases; Gemma 1 no RoPE scaling; both Gemmas only GELU.
        { "olmo2", new JsonObject { ["attention_bias"] = true }, "attention_bias" },
        { "gemma", new JsonObject { ["rope_scaling"] = new JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0 } }, "rope_scaling" },
        { "gemma", new JsonObject { ["hidden_act"] = "silu" }, "hidden_activation" },
        // llama.cpp's gemma2 always soft-caps both, slides exactly the even layers and scales by 1/√head_dim.
        { "gemma2", new JsonObject { ["attn_logit_softcapping"] = null }, "attn_logit_softcapping" },
        { "gemma2", new JsonObject { ["final_logit_softcapping"] = null }, "final_logit_softcapping" },
        { "gemma2", new JsonObject { ["sliding_window"] = null }, "layer_types" },
        {
            "gemma2", new JsonObject
            {
                ["layer_types"] = new JsonArray("full_attention", "sliding_attention", "full_attention", "sliding_attention"),
            },
            "layer_types"
        },
        { "gemma2", new JsonObject { ["query_pre_attn_scalar"] = 20 }, "query_pre_attn_scalar" },
        // Qwen's llama.cpp graph has no per-frequency RoPE factors.
        {
            "qwen3_tied", new JsonObject
            {
                ["rope_scaling"] = new JsonObject
                {
                    ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0,
                    ["original_max_position_embeddings"] = 256,
                },
            },
            "llama3"
        },
        // llama.cpp's YaRN keys carry the factor and the original context only; other betas would ramp elsewhere.
        {
            "qwen3_tied", new JsonObject
            {
                ["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0, ["original_max_position_embeddings"] = 8, ["beta_fast"] = 16.0 },
            },
            "beta_fast"
        },
        { "qwen3_tied", new JsonObject { ["rope_scaling"] = new JsonObject { ["rope_type"] = "dynamic", ["factor"] = 2.0 } }, "dynamic" },
        // Qwen3's attention_bias covers o_proj as well, and llama.cpp's qwen3 fails to load a file with attn_output.bias.
        { "qwen3_tied", new JsonObject { ["attention_bias"] = true }, "attention_bias" },
    };

    /// <summary>
    /// A Qwen3 config.json without head_dim has transformers' default of 128 (Qwen3Config), not hidden / heads (64 / 4 =
    /// 16, all llama.cpp assumes without attention.key_length); llama.cpp then refused the file (attn_q "has wrong shape").
    /// </summary>
    [Fact]
    public void AHeadWidthOtherThanHiddenOverHeadsIsWrittenEvenWhenTheConfigLeavesHeadDimOut()
    {
        using var dir = new TempDir();
        var folder = Qwen3WithoutHeadDim(dir, seed: 5);
        var file = GgufReader.Open(ExportModel(folder, Path.Combine(dir.Path, "q.gguf"), GgufExportType.F32).Path);
        Assert.Equal(128, file.Metadata["qwen3.attention.key_length"].AsInteger());
        Assert.Equal(128, file.Metadata["qwen3.attention.value_length"].AsInteger());
        Assert.Equal(new long[] { 64, 4 * 128 }, file.Tensors.Single(t => t.Name == "blk.0.attn_q.weight").Shape);
    }

    [Theory]
    [MemberData(nameof(Refused))]
    public void ConfigurationsLlamaCppWouldRunDifferentlyAreRefusedBeforeWriting(string model, JsonObject changes, string named)
    {
        using var dir = new TempDir();
        var folder = model switch
        {
            "smollm3" => RandomCheckpoint(dir, "smollm3", TestModels.With(GgufArchitectureInteropTests.SmolLM3Config(), changes), seed: 3),
            "gemma2" => Gemma2Checkpoint(dir, "gemma2", seed: 3, changes),
            "olmo2" => RandomCheckpoint(dir, "olmo2", TestModels.With(Olmo2Config(), changes), seed: 3),
            "gemma" => RandomCheckpoint(dir, "gemma", TestModels.With(GemmaConfig(), changes), seed: 3),
            _ => ReferenceCopy(dir, model, model, changes),
        };
        var output = Path.Combine(dir.Path, "out", "model.gguf");
        var error = Assert.Throws<NotSupportedException>(() => ExportModel(folder, output, GgufExportType.F16));
        Assert.Contains(named, error.Message);
        Assert.False(File.Exists(output));
        Assert.False(Directory.Exists(Path.GetDirectoryName(output)));
    }

    [Fact]
    public void APhi3NameNeedsTheSpecialTokensLlamaCppLooksUpForIt()
    {
        using var dir = new TempDir();
        var folder = ReferenceCopy(dir, "phi3_mini", "my-phi3-model");
        WriteByteLevelTokenizer(folder, specialTokens: false);
        var output = Path.Combine(dir.Path, "p.gguf");
        var error = Assert.Throws<NotSupportedException>(() => ExportModel(folder, output, GgufExportType.F16));
        Assert.Contains("</s>", error.Message);
        Assert.False(File.Exists(output));
        GgufExporter.Export(new GgufExportOptions { ModelDir = folder, OutputPath = output, Type = GgufExportType.F16, Name = "tiny" });
        Assert.True(File.Exists(output));
    }

    /// <summary>
    /// llama.cpp does not normalize byte-level text: a tokenizer with NFKC (which folds "①" to "1" and "ﬁ" to "fi" before
    /// splitting) would tokenize differently there, so it is refused naming the normalizer; NFC (Qwen2's) is exported.
    /// </summary>
    [Theory]
    [InlineData("NFKC", true)]
    [InlineData("Lowercase", true)]
    [InlineData("NFC", false)]
    public void ByteLevelNormalizersLlamaCppLacksAreRefused(string normalizer, bool refused)
    {
        using var dir = new TempDir();
        var folder = ReferenceCopy(dir, "qwen3_tied", "qwen3");
        var path = Path.Combine(folder, "tokenizer.json");
        var tokenizer = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        tokenizer["normalizer"] = new JsonObject { ["type"] = "Sequence", ["normalizers"] = new JsonArray(new JsonObject { ["type"] = normalizer }) };
        File.WriteAllText(path, tokenizer.ToJsonString());
        var output = Path.Combine(dir.Path, "n.gguf");
        if (!refused)
        {
            ExportModel(folder, output, GgufExportType.F32);
            Assert.True(File.Exists(output));
            return;
        }
        var error = Assert.Throws<NotSupportedException>(() => ExportModel(folder, output, GgufExportType.F32));
        Assert.Contains(normalizer, error.Message);
        Assert.False(File.Exists(output));
    }

    [Fact]
    public void FusedQkvTakesLlamaQuantizesTypeOneStepUp()
    {
        // llama_tensor_get_type: attn_qkv is Q5_K in Q4_K_M and Q6_K in Q5_K_M; rows of 64 fall back Q5_K → Q5_1.
        string[] names = ["blk.0.attn_qkv.weight", "blk.0.ffn_down.weight", "blk.1.attn_qkv.weight", "blk.1.ffn_down.weight", "output.weight"];
        var q4 = new GgufTypePlan(GgufExportType.Q4_K_M, names, 2);
        Assert.Equal(GgmlType.Q5_K, q4.Choose("blk.0.attn_qkv.weight", 3072, 2));
        Assert.Equal(GgmlType.Q5_1, q4.Choose("blk.1.attn_qkv.weight", 64, 2));
        var q5 = new GgufTypePlan(GgufExportType.Q5_K_M, names, 2);
        Assert.Equal(GgmlType.Q6_K, q5.Choose("blk.0.attn_qkv.weight", 3072, 2));
        // Two layers: use_more_bits(0, 2) is false (0 < 2/8 = 0 fails, 0 ≥ 7·2/8 = 1 fails), use_more_bits(1, 2) true.
        Assert.Equal(GgmlType.Q5_K, q5.Choose("blk.0.ffn_down.weight", 3072, 2));
        Assert.Equal(GgmlType.Q6_K, q5.Choose("blk.1.ffn_down.weight", 3072, 2));
        Assert.Equal(GgmlType.Q6_K, q5.Choose("output.weight", 3072, 2));
        Assert.Equal(GgmlType.Q5_K, new GgufTypePlan(GgufExportType.Q5_K_M, ["blk.0.attn_q.weight"], 1).Choose("blk.0.attn_q.weight", 512, 2));
        Assert.Equal(GgufExportType.Q5_K_M, GgufExportTypes.Parse("q5_k_m"));
    }

    [Fact]
    public void LoraTargetsMapToTheFusedAndGemmaTensors()
    {
        Assert.Equal("blk.3.attn_qkv.weight", new Phi3Gguf().LinearName("model.layers.3.self_attn.qkv_proj.weight"));
        Assert.Equal("blk.0.ffn_up.weight", new Phi3Gguf().LinearName("model.layers.0.mlp.gate_up_proj.weight"));
        Assert.Equal("blk.2.ffn_down.weight", new Gemma3Gguf().LinearName("language_model.model.layers.2.mlp.down_proj.weight"));
        Assert.Equal("blk.2.attn_output.weight", new Gemma3Gguf().LinearName("model.layers.2.self_attn.o_proj.weight"));
        Assert.Null(new Gemma3Gguf().LinearName("model.layers.2.input_layernorm.weight"));
    }
}
