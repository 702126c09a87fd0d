using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// GGUF files written by SharpTune, loaded and run by real llama.cpp (node-llama-cpp's prebuilt CPU library, 1 thread):
/// greedy ids must equal SharpTune's own for 48 tokens. A Q/K permutation or tensor layout mistake loads fine in
/// llama.cpp and then generates different tokens, so these are the checks that matter.
/// </summary>
public class GgufLlamaCppInteropTests
{
    private const int Tokens = 48;

    public static string TinyStories656K => Path.Combine(TestAssets.SharedDir, "models", "tinystories-656k");

    [LlamaCppFact]
    public void RealLlamaCheckpointsExportedAsF32AndF16DecodeLikeSharpTune()
    {
        using var dir = new TempDir();
        var jobs = new List<JsonObject>();
        var expected = new List<(string What, int[] Ids)>();
        foreach (var (modelDir, prompt) in new[] { (TestAssets.Stories260K, new[] { 1, 403, 407, 261, 378 }), (TinyStories656K, new[] { 1 }) })
        {
            if (!Directory.Exists(modelDir)) continue;
            foreach (var type in new[] { GgufExportType.F32, GgufExportType.F16 })
            {
                var path = Path.Combine(dir.Path, $"{Path.GetFileName(modelDir)}-{type}.gguf");
                ExportModel(modelDir, path, type);
                jobs.Add(LlamaCppRuntime.Greedy(path, prompt, Tokens));
                expected.Add(($"{Path.GetFileName(modelDir)} {type}", SharpTuneGreedy(modelDir, prompt, type)));
            }
        }
        Assert.NotEmpty(jobs);
        var results = LlamaCppRuntime.Run(jobs);
        for (var i = 0; i < jobs.Count; i++)
            Assert.True(expected[i].Ids.SequenceEqual(Ids(results[i], "greedy")),
                $"{expected[i].What}: llama.cpp {string.Join(' ', Ids(results[i], "greedy"))}\n  SharpTune {string.Join(' ', expected[i].Ids)}");
    }

    /// <summary>
    /// The vocabulary metadata (tokenizer.ggml.model, pre, token types, merges, scores, add_bos) decides how llama.cpp
    /// tokenizes: with the real GPT-2, Llama 3, Qwen3 and Gemma 3 tokenizers, llama.cpp's ids for text with spaces,
    /// digits, contractions, CJK, emoji and written special tokens must equal SharpTune's (which equal the Hugging Face
    /// tokenizers library's, see RealTokenizerTests). Texts avoid what llama.cpp does not do: Unicode normalization
    /// (Qwen3's NFC) and '▁' written in the text of a SentencePiece-style vocabulary.
    /// </summary>
    [LlamaCppFact("tokenizers")]
    public void ExportedVocabulariesTokenizeInLlamaCppAsTheModelsTokenizer()
    {
        string[] texts =
        [
            "Hello world", "  leading spaces and trailing   ", "line\n\n\ttab\r\nwindows", "I'm sure they'll say it's 12345678 or 3.14",
            "日本語のテキスト、中文文本", "emoji 👨‍👩‍👧 🇯🇵 done", "def f(x):\n    return x**2  # code", "ภาษาไทย नमस्ते مرحبا",
            "<|im_start|>user\nhi<|im_end|>\n", "<start_of_turn>user\nhi<end_of_turn>", "<|begin_of_text|>Hi<|eot_id|>", "<|endoftext|>x",
        ];
        using var dir = new TempDir();
        var jobs = new List<JsonObject>();
        var tokenizers = new List<(string Name, HfTokenizer Tokenizer)>();
        foreach (var name in new[] { "gpt2", "llama3", "qwen3", "gemma3" })
        {
            var source = Path.Combine(TestAssets.SharedDir, "tokenizers", name);
            var tokenizer = HfTokenizer.FromDirectory(source);
            var config = TestModels.With(TestModels.LlamaConfigJson(vocab: tokenizer.VocabSize, tied: true), new JsonObject
            {
                ["hidden_size"] = 8, ["intermediate_size"] = 16, ["num_hidden_layers"] = 1, ["num_attention_heads"] = 2, ["num_key_value_heads"] = 2,
                ["bos_token_id"] = null, ["eos_token_id"] = null,
            });
            var folder = GgufModelFolders.RandomCheckpoint(dir, name, config, seed: 1);
            foreach (var file in Directory.GetFiles(source).Where(f => Path.GetFileName(f).StartsWith("tokenizer", StringComparison.Ordinal)))
                File.Copy(file, Path.Combine(folder, Path.GetFileName(file)), overwrite: true);
            var output = Path.Combine(dir.Path, name + ".gguf");
            ExportModel(folder, output, GgufExportType.F32);
            jobs.Add(LlamaCppRuntime.Tokenize(output, texts));
            tokenizers.Add((name, tokenizer));
        }
        Assert.NotEmpty(jobs);
        var results = LlamaCppRuntime.Run(jobs);
        for (var i = 0; i < jobs.Count; i++)
        {
            var (name, tokenizer) = tokenizers[i];
            var llamaIds = results[i]["tokens"]!.AsArray();
            for (var t = 0; t < texts.Length; t++)
            {
                var expected = tokenizer.Encode(texts[t]);
                var actual = llamaIds[t]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
                Assert.True(expected.SequenceEqual(actual), $"{name} {texts[t]}: llama.cpp {string.Join(' ', actual)}\n  SharpTune {string.Join(' ', expected)}");
            }
            // Where tokenizer_config.json says whether to add BOS, llama.cpp does as it says.
            if (name is "qwen3" or "gemma3")
                Assert.Equal(tokenizer.Encode("x", addSpecialTokens: true).Count > tokenizer.Encode("x").Count, results[i]["addBos"]!.GetValue<bool>());
        }
    }

    /// <summary>
    /// SharpTune's greedy ids on the weights the export stored (f16-rounded for f16). Where SharpTune cannot load the
    /// checkpoint itself (TinyStories-656K stores only lm_head.weight), the folder's independent float64 reference is used.
    /// </summary>
    private static int[] SharpTuneGreedy(string modelDir, int[] prompt, GgufExportType type)
    {
        try
        {
            using var model = PretrainedModel.Load(modelDir, TorchSharp.torch.ScalarType.Float32);
            if (type == GgufExportType.F16) RoundMatricesToF16(model);
            return Greedy(model, prompt, Tokens);
        }
        catch (InvalidDataException) when (File.Exists(Path.Combine(modelDir, "REFERENCE.json")))
        {
            var reference = JsonNode.Parse(File.ReadAllText(Path.Combine(modelDir, "REFERENCE.json")))!["cases"]!.AsArray()
                .First(c => c!["prompt_ids"]!.AsArray().Select(n => n!.GetValue<int>()).SequenceEqual(prompt))!;
            return reference["greedy_next_ids"]!.AsArray().Select(n => n!.GetValue<int>()).Take(Tokens).ToArray();
        }
    }
}
