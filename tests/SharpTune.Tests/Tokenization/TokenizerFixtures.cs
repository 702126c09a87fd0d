using System.Text.Json.Nodes;

namespace SharpTune.Tests.Tokenization;

/// <summary>Writes small Hugging Face tokenizer folders whose encodings can be worked out by hand.</summary>
internal static class TokenizerFixtures
{
    public const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    public const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // Ids 0..255 are the bytes themselves (written in GPT-2's byte alphabet), then these merges in rank order.
    public const int Hello = 259, SpaceWor = 262, Twelve = 263, OneTwoThree = 264;
    public const int EndOfText = 265, ImStart = 266, ImEnd = 267, BeginOfText = 268, SpaceWorld = 269;
    private static readonly (string Left, string Right)[] Merges =
        [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("1", "2"), ("12", "3")];

    /// <summary>GPT-2's byte → character table, written out independently of the library's copy.</summary>
    public static char ByteChar(int b)
    {
        bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
        if (printable) return (char)b;
        int n = 0;
        for (int i = 0; i < b; i++)
            if (!(i is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF)) n++;
        return (char)(256 + n);
    }

    /// <summary>A Qwen2-style (llama3: false) or Llama-3-style (llama3: true: digit groups of three, ignore_merges,
    /// begin-of-text template) byte-level BPE tokenizer with ChatML special tokens.</summary>
    public static string WriteByteLevel(string dir, bool llama3, JsonObject? tokenizerConfig = null)
    {
        Directory.CreateDirectory(dir);
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++) vocab[ByteChar(b).ToString()] = b;
        int next = 256;
        foreach (var (l, r) in Merges) vocab[l + r] = next++;
        vocab["Ġworld"] = SpaceWorld;

        var added = new JsonArray();
        void Add(int id, string content) => added.Add(new JsonObject
        {
            ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = false, ["special"] = true,
        });
        Add(EndOfText, "<|endoftext|>");
        Add(ImStart, "<|im_start|>");
        Add(ImEnd, "<|im_end|>");
        Add(BeginOfText, "<|begin_of_text|>");

        JsonNode postProcessor = llama3
            ? new JsonObject
            {
                ["type"] = "Sequence",
                ["processors"] = new JsonArray(
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
                    new JsonObject
                    {
                        ["type"] = "TemplateProcessing",
                        ["single"] = new JsonArray(
                            new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } },
                            new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                        ["pair"] = new JsonArray(),
                        ["special_tokens"] = new JsonObject
                        {
                            ["<|begin_of_text|>"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["ids"] = new JsonArray(BeginOfText), ["tokens"] = new JsonArray("<|begin_of_text|>") },
                        },
                    }),
            }
            : new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false };

        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = llama3 ? null : new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = llama3 ? Llama3Pattern : Qwen2Pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false }),
            },
            ["post_processor"] = postProcessor,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = llama3,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(Merges.Select(m => (JsonNode)new JsonArray(m.Left, m.Right)).ToArray()),
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        if (tokenizerConfig is not null) File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), tokenizerConfig.ToJsonString());
        return dir;
    }

    public static string TempDir(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), "sharptune-tests", name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        return dir;
    }
}
