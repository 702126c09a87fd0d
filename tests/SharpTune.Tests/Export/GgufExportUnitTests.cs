using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Export.Ollama;

namespace SharpTune.Tests.Export;

/// <summary>Hand-worked checks of the export's pieces that need no llama.cpp.</summary>
public class GgufExportUnitTests
{
    [Fact]
    public void QkPermutationInterleavesEachHeadsRotateHalfPairs()
    {
        // One head of dimension 4 (two rotary pairs), rows r0..r3 with two columns: rotate-half pairs (r0, r2) and
        // (r1, r3) become adjacent rows, as the converter's reshape(1, 2, 2, …).swapaxes(1, 2) does.
        float[] rows = [0, 0, 1, 1, 2, 2, 3, 3];
        Assert.Equal([0, 0, 2, 2, 1, 1, 3, 3], LlamaFamilyGguf.PermuteRows(rows, [4, 2], heads: 1));
        // Two heads permute independently.
        float[] two = [0, 1, 2, 3, 4, 5, 6, 7];
        Assert.Equal([0, 2, 1, 3, 4, 6, 5, 7], LlamaFamilyGguf.PermuteRows(two, [8, 1], heads: 2));
    }

    [Fact]
    public void Q4KMGivesMoreBitsToTheLayersLlamaQuantizeChooses()
    {
        // 32 layers: use_more_bits(i) = i < 4 || i >= 28 || (i - 4) % 3 == 2 → layers 0-3, 6, 9, …, 27, 28-31.
        var names = Enumerable.Range(0, 32).SelectMany(i => new[] { $"blk.{i}.attn_v.weight", $"blk.{i}.ffn_down.weight", $"blk.{i}.attn_q.weight" })
            .Append("token_embd.weight").Append("output.weight").ToArray();
        var plan = new GgufTypePlan(GgufExportType.Q4_K_M, names, 32);
        var types = names.OrderBy(n => n, Comparer<string>.Create(GgufTypePlan.QuantizeOrder)).ToDictionary(n => n, n => plan.Choose(n, 4096, 2));
        int[] moreBits = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
        for (var i = 0; i < 32; i++)
        {
            var expected = moreBits.Contains(i) ? GgmlType.Q6_K : GgmlType.Q4_K;
            Assert.Equal(expected, types[$"blk.{i}.attn_v.weight"]);
            Assert.Equal(expected, types[$"blk.{i}.ffn_down.weight"]);
            Assert.Equal(GgmlType.Q4_K, types[$"blk.{i}.attn_q.weight"]);
        }
        Assert.Equal(GgmlType.Q6_K, types["output.weight"]);
        Assert.Equal(GgmlType.Q4_K, types["token_embd.weight"]);
        // Rows that 256 does not divide fall back as llama-quantize does.
        var small = new GgufTypePlan(GgufExportType.Q4_K_M, ["blk.0.attn_q.weight"], 1);
        Assert.Equal(GgmlType.Q5_0, small.Choose("blk.0.attn_q.weight", 96, 2));
        Assert.Equal(GgmlType.F16, small.Choose("blk.0.attn_q.weight", 100, 2));
        Assert.Equal(GgmlType.F32, small.Choose("blk.0.attn_norm.weight", 96, 1));
    }

    [Fact]
    public void UnsupportedArchitectureIsRefusedBeforeAnythingIsWritten()
    {
        using var dir = new TempDir();
        var model = dir.File("model/config.json", new JsonObject
        {
            ["architectures"] = new JsonArray("FalconForCausalLM"), ["model_type"] = "llama", ["vocab_size"] = 10, ["hidden_size"] = 8,
            ["intermediate_size"] = 8, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 2,
        }.ToJsonString());
        var output = dir.File("out/model.gguf");
        var error = Assert.Throws<NotSupportedException>(() => GgufExporter.Export(new GgufExportOptions
        {
            ModelDir = Path.GetDirectoryName(model)!, OutputPath = output, Type = GgufExportType.Q4_K_M,
        }));
        Assert.Contains("FalconForCausalLM", error.Message);
        Assert.False(File.Exists(output));
        Assert.Throws<ArgumentException>(() => GgufExportTypes.Parse("q3_k_s"));
    }

    [Fact]
    public void ModelfileUsesTheTemplateFamilyAndItsStopTokens()
    {
        Assert.Equal(OllamaTemplateFamily.ChatMl, OllamaModelfile.Detect("{{'<|im_start|>' + m.role}}"));
        Assert.Equal(OllamaTemplateFamily.Llama3, OllamaModelfile.Detect("<|start_header_id|>{{ role }}<|end_header_id|>"));
        Assert.Equal(OllamaTemplateFamily.Gemma, OllamaModelfile.Detect("<start_of_turn>user"));
        Assert.Equal(OllamaTemplateFamily.Phi3, OllamaModelfile.Detect("<|user|>\n{{ content }}<|end|>"));
        Assert.Equal(OllamaTemplateFamily.None, OllamaModelfile.Detect("[INST] {{ content }} [/INST]"));
        var text = OllamaModelfile.Render("./m.gguf", OllamaTemplateFamily.ChatMl, system: "Answer briefly.", adapter: "./lora.gguf");
        var lines = text.Split('\n');
        Assert.Equal("FROM ./m.gguf", lines[0]);
        Assert.Equal("ADAPTER ./lora.gguf", lines[1]);
        Assert.StartsWith("TEMPLATE \"\"\"", lines[2]);
        Assert.Contains("PARAMETER stop \"<|im_end|>\"", lines);
        Assert.EndsWith("SYSTEM \"\"\"Answer briefly.\"\"\"\n", text);
    }

    [SharedAssetFact("models/stories260K")]
    public void AnExportReplacesAnEarlierExportButNeverOtherFilesOrAFolder()
    {
        using var dir = new TempDir();
        var data = dir.File("train.jsonl", "{\"text\":\"keep me\"}\n");
        GgufExportOptions To(string path) => new() { ModelDir = TestAssets.Stories260K, OutputPath = path, Type = GgufExportType.F32 };
        Assert.Contains("not a GGUF file", Assert.Throws<IOException>(() => GgufExporter.Export(To(data))).Message);
        Assert.Equal("{\"text\":\"keep me\"}\n", File.ReadAllText(data));
        Assert.Contains("is a folder", Assert.Throws<IOException>(() => GgufExporter.Export(To(dir.Path))).Message);
        var gguf = dir.File("model.gguf");
        GgufExporter.Export(To(gguf));
        GgufExporter.Export(To(gguf));   // a re-export replaces the earlier one
        Assert.Equal("llama", GgufReader.Open(gguf).Metadata["general.architecture"].AsString());
    }

    [SharedAssetFact("models/stories260K")]
    public void GgufRoundTripKeepsMetadataAndTensors()
    {
        using var dir = new TempDir();
        var path = dir.File("s.gguf");
        GgufExporter.Export(new GgufExportOptions { ModelDir = TestAssets.Stories260K, OutputPath = path, Type = GgufExportType.F32 });
        var file = GgufReader.Open(path);
        Assert.Equal("llama", file.Metadata["general.architecture"].AsString());
        Assert.Equal(5, file.Metadata["llama.block_count"].AsInteger());
        Assert.Equal(4, file.Metadata["llama.attention.head_count_kv"].AsInteger());
        Assert.Equal("llama", file.Metadata["tokenizer.ggml.model"].AsString());
        Assert.Equal(512, file.Metadata["tokenizer.ggml.tokens"].AsArray<string>().Count);
        Assert.Equal(1, file.Metadata["tokenizer.ggml.bos_token_id"].AsInteger());
        Assert.True(file.Metadata["tokenizer.ggml.add_bos_token"].AsBool());
        Assert.DoesNotContain(file.Tensors, t => t.Name == "output.weight"); // tied: llama.cpp reuses token_embd
        Assert.Equal([64L, 512L], file.Tensor("token_embd.weight").Shape);
        Assert.Equal([172L, 64L], file.Tensor("blk.0.ffn_down.weight").Shape);
        Assert.All(file.Tensors, t => Assert.Equal(0, t.FileOffset % 32));
    }
}
