using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// The quickstart's base and LoRA adapter through llama.cpp: merged f32/f16 exports decode like SharpTune; quantized
/// exports keep llama.cpp's perplexity on held-out text close to f16's; SharpTune reads back every quantized block exactly
/// as ggml dequantizes it; the LoRA adapter GGUF applied by llama.cpp decodes like the merged export.
/// </summary>
public class GgufQuickstartInteropTests(QuickstartBaseFixture quickstart) : IClassFixture<QuickstartBaseFixture>
{
    private const int Tokens = 48;

    [LlamaCppFact]
    public void QuickstartBaseMergedQuantizedAndLoraExportsBehaveInLlamaCpp()
    {
        using var dir = new TempDir();
        string File(string name) => Path.Combine(dir.Path, name);
        var mergedF32 = ExportModel(quickstart.BaseDir, File("merged-f32.gguf"), GgufExportType.F32, quickstart.AdapterDir).Path;
        var mergedF16 = ExportModel(quickstart.BaseDir, File("merged-f16.gguf"), GgufExportType.F16, quickstart.AdapterDir).Path;
        var baseF16 = ExportModel(quickstart.BaseDir, File("base-f16.gguf"), GgufExportType.F16).Path;
        var lora = GgufLoraExporter.Export(new GgufLoraExportOptions { AdapterDir = quickstart.AdapterDir, ModelDir = quickstart.BaseDir, OutputPath = File("lora.gguf") }).Path;
        var quantized = new[] { GgufExportType.Q8_0, GgufExportType.Q4_0, GgufExportType.Q4_K_M, GgufExportType.Q5_K_M, GgufExportType.Q6_K }
            .ToDictionary(t => t, t => ExportModel(quickstart.BaseDir, File($"base-{GgufExportTypes.Name(t)}.gguf"), t).Path);

        var heldOut = quickstart.HeldOutIds(240);
        var prompt = heldOut.Take(12).ToList();
        var jobs = new List<JsonObject>
        {
            LlamaCppRuntime.Greedy(mergedF32, prompt, Tokens),
            LlamaCppRuntime.Greedy(mergedF16, prompt, Tokens),
            LlamaCppRuntime.Greedy(baseF16, prompt, Tokens, lora),
            LlamaCppRuntime.Greedy(baseF16, heldOut.Take(8).ToList(), Tokens),
            LlamaCppRuntime.Greedy(quantized[GgufExportType.Q8_0], heldOut.Take(8).ToList(), Tokens),
            LlamaCppRuntime.Perplexity(baseF16, heldOut),
        };
        jobs.AddRange(quantized.Values.Select(path => LlamaCppRuntime.Perplexity(path, heldOut)));
        var results = LlamaCppRuntime.Run(jobs);

        // Merged exports against SharpTune's own merged model (weights rounded to f16 for the f16 file).
        var (expectedF32, expectedF16) = SharpTuneMergedGreedy(prompt);
        AssertSameIds("merged f32", expectedF32, Ids(results[0], "greedy"));
        AssertSameIds("merged f16", expectedF16, Ids(results[1], "greedy"));
        // The adapter GGUF applied at run time by llama.cpp decodes like the merged file.
        AssertSameIds("f16 base + LoRA GGUF vs merged f16", Ids(results[1], "greedy"), Ids(results[2], "greedy"));
        // q8_0: at least 90% of greedy tokens as f16's, perplexity within 1%.
        var f16Greedy = Ids(results[3], "greedy");
        var q8Greedy = Ids(results[4], "greedy");
        var agreeing = f16Greedy.Zip(q8Greedy).Count(p => p.First == p.Second);
        Assert.True(agreeing >= 0.9 * Tokens, $"q8_0 agrees with f16 on {agreeing} of {Tokens} greedy tokens");
        var f16Perplexity = results[5]["perplexity"]!.GetValue<double>();
        Assert.InRange(results[5]["firstMass"]!.GetValue<double>(), 0.999, 1.001); // llama.cpp's full distribution
        Assert.True(f16Perplexity < 0.5 * HfTokenizerSize(), $"the base is trained: perplexity {f16Perplexity:F2} on held-out text");
        var perplexities = quantized.Keys.Zip(results.Skip(6), (t, r) => (Type: t, Perplexity: r["perplexity"]!.GetValue<double>())).ToList();
        foreach (var (type, perplexity) in perplexities)
        {
            var limit = type == GgufExportType.Q8_0 ? 0.01 : 0.10;
            Assert.True(Math.Abs(perplexity / f16Perplexity - 1) <= limit,
                $"{type}: llama.cpp perplexity {perplexity:F4} vs f16 {f16Perplexity:F4} (limit {limit:P0})");
        }

        // SharpTune reads back every tensor of the quantized files exactly as ggml dequantizes what its GGUF parser finds.
        foreach (var path in quantized.Values)
        {
            var reader = GgufReader.Open(path);
            foreach (var tensor in reader.Tensors.Where(t => GgmlTypeInfo.IsQuantized(t.Type)))
            {
                var (type, bytes) = GgmlNative.ReadTensor(path, tensor.Name);
                Assert.Equal(tensor.Type, type);
                Assert.Equal(GgmlNative.Dequantize(type, bytes, tensor.ElementCount), reader.ReadFloat32(tensor.Name));
            }
        }
        if (quickstart.Built)
        {
            AssertQ4KMTypes(GgufReader.Open(quantized[GgufExportType.Q4_K_M]));
            var q5 = GgufReader.Open(quantized[GgufExportType.Q5_K_M]);
            Assert.Equal(GgmlType.Q5_K, q5.Tensor("blk.0.attn_v.weight").Type);
            Assert.Equal(GgmlType.Q6_K, q5.Tensor("blk.1.attn_v.weight").Type);
            Assert.Equal(GgmlType.Q5_K, q5.Tensor("blk.0.attn_q.weight").Type);
        }
    }

    /// <summary>
    /// llama-quantize's Q4_K_M mix worked by hand for this 2-layer, 256-wide, untied model: use_more_bits(i, 2) holds for
    /// layer 1 only (i ≥ 7·2/8), so attn_v and ffn_down are Q6_K there and Q4_K in layer 0; the output projection is
    /// Q6_K; the token embedding and other matrices Q4_K; norms stay F32.
    /// </summary>
    private static void AssertQ4KMTypes(GgufReader file)
    {
        GgmlType TypeOf(string name) => file.Tensor(name).Type;
        Assert.Equal(GgmlType.Q4_K, TypeOf("blk.0.attn_v.weight"));
        Assert.Equal(GgmlType.Q6_K, TypeOf("blk.1.attn_v.weight"));
        Assert.Equal(GgmlType.Q4_K, TypeOf("blk.0.ffn_down.weight"));
        Assert.Equal(GgmlType.Q6_K, TypeOf("blk.1.ffn_down.weight"));
        Assert.Equal(GgmlType.Q6_K, TypeOf("output.weight"));
        Assert.Equal(GgmlType.Q4_K, TypeOf("token_embd.weight"));
        Assert.Equal(GgmlType.Q4_K, TypeOf("blk.0.attn_q.weight"));
        Assert.Equal(GgmlType.Q4_K, TypeOf("blk.1.ffn_gate.weight"));
        Assert.Equal(GgmlType.F32, TypeOf("blk.0.attn_norm.weight"));
        Assert.Equal((uint)LlamaFileType.MostlyQ4_K_M, (uint)file.Metadata["general.file_type"].AsInteger());
    }

    private int HfTokenizerSize() => SharpTune.Tokenization.HfTokenizer.FromDirectory(quickstart.BaseDir).VocabSize;

    private (int[] F32, int[] F16) SharpTuneMergedGreedy(IReadOnlyList<int> prompt)
    {
        using var model = PretrainedModel.Load(quickstart.BaseDir, TorchSharp.torch.ScalarType.Float32);
        SharpTune.Peft.PeftAdapters.Load(model, quickstart.AdapterDir).MergeAndUnload();
        var f32 = Greedy(model, prompt, Tokens);
        RoundMatricesToF16(model);
        return (f32, Greedy(model, prompt, Tokens));
    }

    private static void AssertSameIds(string what, int[] expected, int[] actual) =>
        Assert.True(expected.SequenceEqual(actual), $"{what}:\n  expected {string.Join(' ', expected)}\n  actual   {string.Join(' ', actual)}");
}
