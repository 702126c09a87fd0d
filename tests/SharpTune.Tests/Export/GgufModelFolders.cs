using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Export;

/// <summary>
/// Model folders for the GGUF architecture checks: copies of ../shared/models/reference-archs (with config changes for
/// the variants the README lists) and small random checkpoints, each with a byte-level tokenizer, since llama.cpp reads
/// the vocabulary from the GGUF file and these checkpoints have none.
/// </summary>
public static class GgufModelFolders
{
    public static string ReferenceArchs => Path.Combine(TestAssets.SharedDir, "models", "reference-archs");

    /// <summary>The prompts of a reference folder's EXPECTED.json: input ids, transformers' last logits and greedy ids.</summary>
    public static IReadOnlyList<(int[] Ids, double[] LastLogits, int[] Greedy)> ExpectedPrompts(string name) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(ReferenceArchs, name, "EXPECTED.json")))!["prompts"]!.AsArray()
            .Select(p => (Ints(p!["input_ids"]!), p["last_logits"]!.AsArray().Select(n => n!.GetValue<double>()).ToArray(), Ints(p["greedy_ids"]!)))
            .ToList();

    private static int[] Ints(JsonNode node) => node.AsArray().Select(n => n!.GetValue<int>()).ToArray();

    /// <summary>A copy of reference checkpoint <paramref name="name"/> with <paramref name="changes"/> applied to its config.</summary>
    public static string ReferenceCopy(TempDir dir, string name, string label, JsonObject? changes = null)
    {
        var source = Path.Combine(ReferenceArchs, name);
        var target = Path.Combine(dir.Path, label);
        Directory.CreateDirectory(target);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        if (changes is not null) config = TestModels.With(config, changes);
        File.WriteAllText(Path.Combine(target, "config.json"), config.ToJsonString());
        File.Copy(Path.Combine(source, "model.safetensors"), Path.Combine(target, "model.safetensors"));
        WriteByteLevelTokenizer(target);
        return target;
    }

    /// <summary>
    /// Saves <paramref name="model"/> as folder <paramref name="label"/> with a byte-level tokenizer; <paramref name="changes"/>
    /// go into the saved config.json only, so one set of weights serves variants of one model.
    /// </summary>
    public static string SaveFolder(CausalLanguageModel model, TempDir dir, string label, JsonObject? changes = null)
    {
        var target = Path.Combine(dir.Path, label);
        PretrainedModel.Save(model, target);
        if (changes is not null)
        {
            var path = Path.Combine(target, "config.json");
            File.WriteAllText(path, TestModels.With(JsonNode.Parse(File.ReadAllText(path))!.AsObject(), changes).ToJsonString());
        }
        WriteByteLevelTokenizer(target);
        return target;
    }

    /// <summary>A randomly initialised checkpoint of <paramref name="config"/> (norms and biases perturbed), saved with a tokenizer.</summary>
    public static string RandomCheckpoint(TempDir dir, string label, JsonObject config, long seed)
    {
        manual_seed(seed);
        using var model = ModelFactory.Create(ModelConfig.FromJson(config), ScalarType.Float32);
        using (no_grad())
            foreach (var (name, parameter) in model.named_parameters())
                if (name.Contains("norm") || name.EndsWith("bias", StringComparison.Ordinal))
                    parameter.add_(randn_like(parameter) * 0.1);
        return SaveFolder(model, dir, label);
    }

    /// <summary>
    /// Gemma 2 for llama.cpp comparisons: 4 layers (0 and 2 slide over 8 keys), hidden 64, 4 query and 2 key/value heads
    /// of 16 (query_pre_attn_scalar 16, llama.cpp's 1/√head_dim), vocabulary 512, soft caps of 2 on attention scores and
    /// 0.1 on logits.
    /// </summary>
    public static JsonObject Gemma2Config(JsonObject? changes = null)
    {
        var config = TestModels.With(TestModels.Gemma2ConfigJson(vocab: 512), new JsonObject
        {
            ["num_hidden_layers"] = 4, ["intermediate_size"] = 128, ["head_dim"] = 16, ["query_pre_attn_scalar"] = 16,
            ["sliding_window"] = 8, ["max_position_embeddings"] = 512, ["attn_logit_softcapping"] = 2.0,
            ["final_logit_softcapping"] = 0.1, ["tie_word_embeddings"] = true,
        });
        return changes is null ? config : TestModels.With(config, changes);
    }

    /// <summary>
    /// A random <see cref="Gemma2Config"/> checkpoint whose soft caps bind: q_proj and k_proj drawn with std 0.4 (scores
    /// of order 64·0.4²·… ≈ 10 against the cap of 2), and the tied embedding's default std 0.02 giving logits of order
    /// 0.2–0.5 against the cap of 0.1. Larger logits would do too, but llama.cpp's GELU goes through an f16 table, and the
    /// relative error it leaves grows with them in log-probability (measured: 1.5e-4 here, 2.6e-3 with embeddings of std
    /// 0.5 and a cap of 2). Norms perturbed as in <see cref="RandomCheckpoint"/>. <paramref name="changes"/> go into the
    /// saved config.json only, so one set of weights serves variants (no caps, no window) of the same model.
    /// </summary>
    public static string Gemma2Checkpoint(TempDir dir, string label, long seed, JsonObject? changes = null)
    {
        manual_seed(seed);
        using var model = ModelFactory.Create(ModelConfig.FromJson(Gemma2Config()), ScalarType.Float32);
        using (no_grad())
            foreach (var (name, parameter) in model.named_parameters())
            {
                if (name.Contains("norm")) parameter.add_(randn_like(parameter) * 0.1);
                else if (name.EndsWith("q_proj.weight", StringComparison.Ordinal) || name.EndsWith("k_proj.weight", StringComparison.Ordinal))
                    parameter.normal_(0, 0.4);
            }
        return SaveFolder(model, dir, label, changes);
    }

    /// <summary>
    /// Granite for llama.cpp comparisons: 4 layers, hidden 64, 4 query and 2 key/value heads of 16, vocabulary 512, tied
    /// head, granite-3.3-2b's embedding (12), residual (0.22) and logit (8) multipliers and its attention_multiplier of
    /// 1/head_dim (1/16, not 1/√16).
    /// </summary>
    public static JsonObject GraniteConfig() => TestModels.With(TestModels.GraniteConfigJson(vocab: 512), new JsonObject
    {
        ["num_hidden_layers"] = 4, ["max_position_embeddings"] = 512,
    });

    /// <summary>OLMo 2 for llama.cpp comparisons: 4 layers, hidden 64, 4 query and 2 key/value heads of 16, vocabulary 512, untied.</summary>
    public static JsonObject Olmo2Config() => TestModels.With(TestModels.Olmo2ConfigJson(vocab: 512), new JsonObject
    {
        ["num_hidden_layers"] = 4, ["max_position_embeddings"] = 512,
    });

    /// <summary>
    /// Gemma 1 for llama.cpp comparisons: 4 layers, hidden 64, 4 query heads of 16 sharing one key/value head (gemma-2b's
    /// multi-query shape), vocabulary 512, tied head, GemmaConfig's default GELU-tanh (the activation llama.cpp's gemma has).
    /// </summary>
    public static JsonObject GemmaConfig() => TestModels.With(TestModels.GemmaConfigJson(vocab: 512), new JsonObject
    {
        ["num_hidden_layers"] = 4, ["head_dim"] = 16, ["intermediate_size"] = 128, ["max_position_embeddings"] = 512,
        ["hidden_act"] = "gelu_pytorch_tanh",
    });

    /// <summary>
    /// A random checkpoint of <paramref name="config"/> whose parts carry weight: linear weights drawn with std 1/√in when
    /// <paramref name="unitLinears"/> (each block's output of the order of its input, so a residual or attention multiplier
    /// moves the result; otherwise the default init's 0.02), the embeddings with <paramref name="embeddingStd"/>, norms
    /// perturbed as in <see cref="RandomCheckpoint"/>, q_proj and k_proj with <paramref name="queryKeyStd"/> when given
    /// (larger scores, on which the attention scale then matters). <paramref name="changes"/> go into the saved config.json
    /// only, so one set of weights serves variants of one model.
    /// </summary>
    public static string WeightedCheckpoint(TempDir dir, string label, JsonObject config, long seed, double embeddingStd, bool unitLinears,
        JsonObject? changes = null, double? queryKeyStd = null)
    {
        manual_seed(seed);
        using var model = ModelFactory.Create(ModelConfig.FromJson(config), ScalarType.Float32);
        using (no_grad())
            foreach (var (name, parameter) in model.named_parameters())
            {
                if (name.Contains("norm")) parameter.add_(randn_like(parameter) * 0.1);
                else if (name.Contains("embed_tokens")) parameter.normal_(0, embeddingStd);
                else if (queryKeyStd is { } std && (name.EndsWith("q_proj.weight", StringComparison.Ordinal) || name.EndsWith("k_proj.weight", StringComparison.Ordinal)))
                    parameter.normal_(0, std);
                else if (unitLinears && parameter.dim() == 2) parameter.normal_(0, 1 / Math.Sqrt(parameter.shape[1]));
            }
        return SaveFolder(model, dir, label, changes);
    }

    /// <summary>
    /// A random Qwen3 checkpoint (hidden 64, 4 heads) whose config.json leaves head_dim out, as hand-written configs do:
    /// transformers' Qwen3Config then makes each head 128 wide.
    /// </summary>
    public static string Qwen3WithoutHeadDim(TempDir dir, long seed)
    {
        var config = TestModels.Qwen3ConfigJson(vocab: 512);
        config.Remove("head_dim");
        var folder = RandomCheckpoint(dir, "qwen3-no-head-dim", config, seed);
        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!.AsObject();
        saved.Remove("head_dim");
        File.WriteAllText(Path.Combine(folder, "config.json"), saved.ToJsonString());
        Assert.Equal(128, ModelConfig.Load(folder).HeadDim);
        return folder;
    }

    /// <summary>
    /// A GPT-2-style byte-level BPE tokenizer.json: the 256 byte tokens in GPT-2's byte-to-unicode alphabet (ids = byte
    /// values), two merges and (unless <paramref name="specialTokens"/> is false) the special tokens &lt;unk&gt;, &lt;s&gt;,
    /// &lt;/s&gt; and &lt;|endoftext|&gt; at 258–261, so it fits any vocabulary of 262 or more ids (the rest become
    /// llama.cpp's unused tokens).
    /// </summary>
    public static void WriteByteLevelTokenizer(string dir, bool specialTokens = true)
    {
        var vocab = new JsonObject();
        foreach (var (b, c) in ByteToUnicode()) vocab[c.ToString()] = b;
        vocab["\u0120t"] = 256;
        vocab["he"] = 257;
        var added = new JsonArray();
        if (specialTokens)
            foreach (var (token, i) in new[] { "<unk>", "<s>", "</s>", "<|endoftext|>" }.Select((t, i) => (t, i)))
                added.Add(new JsonObject
                {
                    ["id"] = 258 + i, ["content"] = token, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                    ["normalized"] = false, ["special"] = true,
                });
        WriteByteLevelBpe(dir, vocab, added, new JsonArray("\u0120 t", "h e"));
    }

    /// <summary>A byte-level BPE tokenizer.json (GPT-2's pre-tokenizer, post-processor and decoder) with these entries.</summary>
    private static void WriteByteLevelBpe(string dir, JsonObject vocab, JsonArray added, JsonArray merges)
    {
        JsonObject ByteLevel(bool prefix) => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = prefix, ["trim_offsets"] = true, ["use_regex"] = true };
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added, ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(false), ["post_processor"] = ByteLevel(true), ["decoder"] = ByteLevel(true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tokenizer.ToJsonString());
    }

    /// <summary>
    /// A byte-level BPE tokenizer.json for vocabularies under 262 ids (too small for every byte): the special tokens
    /// &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt; at 0–2 and single printable characters from '!' for the rest, no merges. llama.cpp
    /// needs some vocabulary in the file; the comparisons feed it token ids, so which text maps to them does not matter.
    /// </summary>
    public static void WriteSmallTokenizer(string dir, int vocabSize)
    {
        if (vocabSize is < 3 or > 3 + '~' - '!' + 1)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "3 special tokens plus at most 94 printable characters");
        var vocab = new JsonObject();
        var added = new JsonArray();
        foreach (var (token, id) in new[] { "<unk>", "<s>", "</s>" }.Select((t, i) => (t, i)))
        {
            vocab[token] = id;
            added.Add(new JsonObject
            {
                ["id"] = id, ["content"] = token, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            });
        }
        for (var id = 3; id < vocabSize; id++) vocab[((char)('!' + id - 3)).ToString()] = id;
        WriteByteLevelBpe(dir, vocab, added, new JsonArray());
    }

    /// <summary>A copy of a transformers fixture folder (config, weights, EXPECTED.json) with <see cref="WriteSmallTokenizer"/>'s tokenizer.</summary>
    public static string FixtureCopy(TempDir dir, string fixtureFolder)
    {
        var target = Path.Combine(dir.Path, Path.GetFileName(fixtureFolder));
        Directory.CreateDirectory(target);
        foreach (var file in new[] { "config.json", "model.safetensors", "EXPECTED.json" })
            File.Copy(Path.Combine(fixtureFolder, file), Path.Combine(target, file));
        WriteSmallTokenizer(target, ModelConfig.Load(target).VocabSize);
        return target;
    }

    /// <summary>GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onwards.</summary>
    private static IEnumerable<(int Byte, char Char)> ByteToUnicode()
    {
        var next = 0;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            yield return (b, printable ? (char)b : (char)(256 + next++));
        }
    }

    /// <summary>SharpTune's next-token log-probabilities after <paramref name="prompt"/>.</summary>
    public static double[] LogProbabilities(CausalLanguageModel model, IReadOnlyList<int> prompt)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var logits = model.Forward(tensor(prompt.Select(t => (long)t).ToArray()).unsqueeze(0))[0, -1].to(ScalarType.Float64);
        return logits.log_softmax(0).data<double>().ToArray();
    }

    /// <summary>Log-softmax of reference logits (EXPECTED.json's last_logits).</summary>
    public static double[] LogSoftmax(double[] logits)
    {
        var max = logits.Max();
        var logSum = max + Math.Log(logits.Sum(l => Math.Exp(l - max)));
        return logits.Select(l => l - logSum).ToArray();
    }

    /// <summary>The largest |log p − expected log p| over the vocabulary (a token llama.cpp left out counts as infinite).</summary>
    public static double MaxLogProbabilityDifference(double[] expectedLogProbabilities, double[] probabilities) =>
        expectedLogProbabilities.Zip(probabilities, (e, p) => Math.Abs(e - Math.Log(p))).Max();
}
