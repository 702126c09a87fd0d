using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Models;
using SharpTune.Tokenization;

namespace SharpTune.Export.Gguf;

/// <summary>llama.cpp's token types (llama_token_type / gguf TokenType).</summary>
internal enum GgufTokenType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

/// <summary>
/// The <c>tokenizer.ggml.*</c> metadata llama.cpp's converter writes for a Hugging Face <c>tokenizer.json</c>:
/// <c>llama</c> (SentencePiece-style BPE with ▁ and byte fallback: tokens, scores, token types) or <c>gpt2</c>
/// (byte-level BPE: tokens, token types, merges, and the pre-tokenizer name), the special-token ids, the add-BOS/EOS
/// flags and the chat template. Ids the model has but the tokenizer lacks become <c>[PADn]</c> (unused), as the
/// converter pads them.
/// </summary>
internal static class GgufVocabulary
{
    // The pre-tokenizer regexes of the families llama.cpp knows, as the Hugging Face tokenizer.json files spell them.
    private const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    // o200k (GPT-4o, gpt-oss), as llama.cpp's llama-vocab.cpp quotes it for LLAMA_VOCAB_PRE_TYPE_GPT4O.
    private const string O200kPattern = @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    private const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static readonly string[] EndOfTurnTokens = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>"];

    /// <summary>
    /// llama.cpp's gpt-4o pre-tokenizer does not run o200k's pattern as written: llama-vocab.cpp
    /// (ggml-org/llama.cpp@00ad355e, LLAMA_VOCAB_PRE_TYPE_GPT4O) rewrites its letter classes as "a letter not a–z" and
    /// "a letter not A–Z", without \p{M}, and unicode.cpp (@0c4093cc, unicode_regex_split) collapses every non-ASCII
    /// letter to one class before matching.
    /// </summary>
    internal const string O200kDivergenceWarning =
        "llama.cpp's gpt-4o pre-tokenizer approximates o200k's pattern: outside ASCII it does not split words where the case " +
        "changes (\"приветМир\", \"éÉ\" stay one word) and it ends words at combining marks (Devanagari, Thai, Bengali and other " +
        "scripts that use them, and decomposed accents), so such text can be tokenized differently than the model was trained on";

    /// <summary>Adds the tokenizer's GGUF metadata; returns warnings about how llama.cpp will use it.</summary>
    public static IReadOnlyList<string> AddTo(List<KeyValuePair<string, GgufValue>> metadata, string tokenizerDir, ModelConfig config)
    {
        var warnings = new List<string>();
        var path = Path.Combine(tokenizerDir, "tokenizer.json");
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: GGUF export needs the model's tokenizer.json (llama.cpp tokenizes with the vocabulary stored in the file)", path);
        var root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new InvalidDataException($"{path}: expected a JSON object");
        var model = root["model"] as JsonObject ?? throw new InvalidDataException($"{path}: no 'model'");
        var modelType = model["type"]?.GetValue<string>() ?? "BPE";
        if (modelType != "BPE")
            throw new NotSupportedException($"{path}: tokenizer model '{modelType}' cannot be exported to GGUF (BPE tokenizers can)");
        var tokenizer = HfTokenizer.FromDirectory(tokenizerDir);

        var vocab = (model["vocab"] as JsonObject ?? throw new InvalidDataException($"{path}: model.vocab missing"))
            .ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<int>());
        var added = (root["added_tokens"] as JsonArray ?? [])
            .Select(t => (Id: t!["id"]!.GetValue<int>(), Content: t["content"]!.GetValue<string>(), Special: t["special"]?.GetValue<bool>() ?? false))
            .ToList();
        var size = Math.Max(config.VocabSize, Math.Max(vocab.Values.DefaultIfEmpty(-1).Max(), added.Select(a => a.Id).DefaultIfEmpty(-1).Max()) + 1);
        if (size > config.VocabSize)
            throw new InvalidDataException($"{path}: the tokenizer has ids up to {size - 1}, beyond the model's vocab_size {config.VocabSize}");

        var tokens = new string[size];
        var types = new int[size];
        foreach (var (text, id) in vocab) { tokens[id] = text; types[id] = (int)GgufTokenType.Normal; }
        var unk = model["unk_token"]?.GetValue<string>();
        var merges = ReadMerges(model, path);
        var byteLevel = IsByteLevel(root);
        RefuseNormalizersLlamaCppLacks(root, byteLevel, path);
        foreach (var (id, content, special) in added)
        {
            var control = special || LooksSpecial(content);
            types[id] = (int)(control ? GgufTokenType.Control : GgufTokenType.UserDefined);
            // The converter pre-normalizes user-defined tokens' '▁' to spaces: llama.cpp matches them in the raw text.
            tokens[id] = control ? content : content.Replace('\u2581', ' ');
        }
        for (var i = 0; i < size; i++)
        {
            if (tokens[i] is not null) continue;
            tokens[i] = $"[PAD{i}]";
            types[i] = (int)GgufTokenType.Unused;
        }

        if (byteLevel)
        {
            metadata.Add(new("tokenizer.ggml.model", GgufValue.Str("gpt2")));
            var pre = PreTokenizerName(root, path);
            if (pre == "gpt-4o") warnings.Add(O200kDivergenceWarning);
            metadata.Add(new("tokenizer.ggml.pre", GgufValue.Str(pre)));
            metadata.Add(new("tokenizer.ggml.tokens", GgufValue.Strings(tokens)));
            metadata.Add(new("tokenizer.ggml.token_type", GgufValue.Ints(types)));
            metadata.Add(new("tokenizer.ggml.merges", GgufValue.Strings(merges)));
        }
        else
        {
            // SentencePiece-style: llama.cpp merges the adjacent pair whose result has the highest score, so a merged
            // token scores minus its merge rank and the tokenizer replays the BPE merges in order.
            var scores = new float[size];
            for (var rank = 0; rank < merges.Count; rank++)
            {
                var merged = merges[rank].Replace(" ", "");
                if (vocab.TryGetValue(merged, out var id) && scores[id] == 0) scores[id] = -(rank + 1);
            }
            for (var i = 0; i < size; i++)
            {
                if (types[i] == (int)GgufTokenType.Unused) scores[i] = -1000f;
                else if (tokens[i] == unk) types[i] = (int)GgufTokenType.Unknown;
                else if (Regex.IsMatch(tokens[i], "^<0x[0-9A-Fa-f]{2}>$")) types[i] = (int)GgufTokenType.Byte;
            }
            metadata.Add(new("tokenizer.ggml.model", GgufValue.Str("llama")));
            metadata.Add(new("tokenizer.ggml.pre", GgufValue.Str("default")));
            metadata.Add(new("tokenizer.ggml.tokens", GgufValue.Strings(tokens)));
            metadata.Add(new("tokenizer.ggml.scores", GgufValue.Floats(scores)));
            metadata.Add(new("tokenizer.ggml.token_type", GgufValue.Ints(types)));
            metadata.Add(new("tokenizer.ggml.add_space_prefix", GgufValue.Bool(PrependsSpace(root))));
        }

        var bos = tokenizer.BosTokenId ?? config.BosTokenId;
        var eos = tokenizer.EosTokenId ?? (config.EosTokenIds.Count > 0 ? config.EosTokenIds[0] : null);
        if (bos is { } b) metadata.Add(new("tokenizer.ggml.bos_token_id", GgufValue.U32((uint)b)));
        if (eos is { } e) metadata.Add(new("tokenizer.ggml.eos_token_id", GgufValue.U32((uint)e)));
        if (unk is not null && tokenizer.TokenToId(unk) is { } u) metadata.Add(new("tokenizer.ggml.unknown_token_id", GgufValue.U32((uint)u)));
        if ((tokenizer.PadTokenId ?? config.PadTokenId) is { } p) metadata.Add(new("tokenizer.ggml.padding_token_id", GgufValue.U32((uint)p)));
        var endOfTurn = EndOfTurnTokens.Select(tokenizer.TokenToId).FirstOrDefault(id => id is not null && id != eos);
        if (tokenizer.ChatTemplate is not null && endOfTurn is { } eot)
            metadata.Add(new("tokenizer.ggml.eot_token_id", GgufValue.U32((uint)eot)));
        var (addBos, addEos) = SpecialTokenFlags(root, tokenizerDir);
        if (addBos is { } ab) metadata.Add(new("tokenizer.ggml.add_bos_token", GgufValue.Bool(ab)));
        if (addEos is { } ae) metadata.Add(new("tokenizer.ggml.add_eos_token", GgufValue.Bool(ae)));
        if (tokenizer.ChatTemplate is { } template) metadata.Add(new("tokenizer.chat_template", GgufValue.Str(template)));
        return warnings;
    }

    /// <summary>End-of-turn token ids of the template family, for the Ollama Modelfile's stop parameters.</summary>
    public static IEnumerable<string> EndOfTurnTokenTexts(HfTokenizer tokenizer) =>
        EndOfTurnTokens.Where(t => tokenizer.TokenToId(t) is not null);

    private static List<string> ReadMerges(JsonObject model, string path) => (model["merges"] as JsonArray ?? []).Select(m => m switch
    {
        JsonValue v => v.GetValue<string>(),
        JsonArray pair when pair.Count == 2 => pair[0]!.GetValue<string>() + " " + pair[1]!.GetValue<string>(),
        _ => throw new InvalidDataException($"{path}: a merge must be \"a b\" or [\"a\", \"b\"], found {m?.ToJsonString()}"),
    }).ToList();

    private static IEnumerable<JsonObject> Flatten(JsonNode? node, string listKey) => node switch
    {
        JsonObject o when o["type"]?.GetValue<string>() == "Sequence" => (o[listKey] as JsonArray ?? []).SelectMany(n => Flatten(n, listKey)),
        JsonObject o => [o],
        _ => [],
    };

    private static bool IsByteLevel(JsonObject root) =>
        Flatten(root["pre_tokenizer"], "pretokenizers").Any(p => p["type"]?.GetValue<string>() == "ByteLevel")
        || Flatten(root["decoder"], "decoders").Any(d => d["type"]?.GetValue<string>() == "ByteLevel");

    private static bool PrependsSpace(JsonObject root) =>
        Flatten(root["normalizer"], "normalizers").Any(n => n["type"]?.GetValue<string>() == "Prepend" && n["prepend"]?.GetValue<string>() == "\u2581")
        || Flatten(root["pre_tokenizer"], "pretokenizers").Any(p => p["type"]?.GetValue<string>() == "Metaspace"
            && (p["prepend_scheme"]?.GetValue<string>() ?? (p["add_prefix_space"]?.GetValue<bool>() == false ? "never" : "always")) != "never");

    /// <summary>
    /// llama.cpp applies no normalizer of its own to a byte-level vocabulary, and to a SentencePiece-style one only the
    /// '▁' prefix and space escaping; the converter accepts NFC beside byte-level (Qwen2's, which its pre-tokenizer check
    /// lets through). Any other normalizer (NFKC, Lowercase, Strip, a regex Replace) would leave llama.cpp tokenizing text
    /// differently from the model's tokenizer, so the export is refused naming it.
    /// </summary>
    private static void RefuseNormalizersLlamaCppLacks(JsonObject root, bool byteLevel, string path)
    {
        foreach (var normalizer in Flatten(root["normalizer"], "normalizers"))
        {
            var type = normalizer["type"]?.GetValue<string>() ?? "";
            var supported = byteLevel
                ? type == "NFC"
                : (type == "Prepend" && normalizer["prepend"]?.GetValue<string>() == "\u2581")
                  || (type == "Replace" && normalizer["pattern"]?["String"]?.GetValue<string>() == " " && normalizer["content"]?.GetValue<string>() == "\u2581");
            if (!supported)
                throw new NotSupportedException(
                    $"{path}: its normalizer {normalizer.ToJsonString()} has no equivalent in llama.cpp's {(byteLevel ? "byte-level" : "SentencePiece-style")} " +
                    "tokenizer, which would then split text differently than the model was trained on");
        }
    }

    /// <summary>The llama.cpp pre-tokenizer whose splitting rules equal this tokenizer's (tokenizer.ggml.pre).</summary>
    private static string PreTokenizerName(JsonObject root, string path)
    {
        var steps = Flatten(root["pre_tokenizer"], "pretokenizers").ToList();
        string Type(JsonObject o) => o["type"]?.GetValue<string>() ?? "";
        if (steps.Count == 1 && Type(steps[0]) == "ByteLevel" && (steps[0]["use_regex"]?.GetValue<bool>() ?? true))
            return "gpt-2";
        if (steps.Count == 2 && Type(steps[0]) == "Split" && Type(steps[1]) == "ByteLevel" && steps[1]["use_regex"]?.GetValue<bool>() == false)
        {
            var pattern = steps[0]["pattern"]?["Regex"]?.GetValue<string>();
            // llama.cpp's llama-bpe also ignores merges for words in the vocabulary (Llama 3's ignore_merges); smaug-bpe
            // splits the same way and applies every merge (SmolLM3 and other Llama-3-style tokenizers without the flag).
            if (pattern == Llama3Pattern) return root["model"]?["ignore_merges"]?.GetValue<bool>() == true ? "llama-bpe" : "smaug-bpe";
            if (pattern == Qwen2Pattern) return "qwen2";
            // llama.cpp's gpt-4o applies every merge, so a vocabulary that skips merges for known words is not it.
            if (pattern == O200kPattern && root["model"]?["ignore_merges"]?.GetValue<bool>() != true) return "gpt-4o";
        }
        if (steps.Count == 2 && Type(steps[0]) == "Digits" && steps[0]["individual_digits"]?.GetValue<bool>() == true
            && Type(steps[1]) == "ByteLevel" && (steps[1]["use_regex"]?.GetValue<bool>() ?? true))
            return "smollm";
        throw new NotSupportedException(
            $"{path}: its pre-tokenizer {root["pre_tokenizer"]?.ToJsonString()} matches none llama.cpp implements that SharpTune can name " +
            "(GPT-2, Llama 3, Smaug, Qwen2, SmolLM, GPT-4o); llama.cpp would split text differently than the model was trained on");
    }

    /// <summary>add_bos/add_eos as tokenizer_config.json says, else as tokenizer.json's TemplateProcessing implies.</summary>
    private static (bool? AddBos, bool? AddEos) SpecialTokenFlags(JsonObject root, string dir)
    {
        var configPath = Path.Combine(dir, "tokenizer_config.json");
        var config = File.Exists(configPath) ? JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject : null;
        bool? Flag(string key) => config?[key] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : null;
        bool? addBos = Flag("add_bos_token"), addEos = Flag("add_eos_token");
        if (Flatten(root["post_processor"], "processors").FirstOrDefault(p => p["type"]?.GetValue<string>() == "TemplateProcessing") is { } template
            && template["single"] is JsonArray single)
        {
            addBos ??= single.Count > 0 && single[0]?["SpecialToken"] is not null;
            addEos ??= single.Count > 1 && single[^1]?["SpecialToken"] is not null;
        }
        return (addBos, addEos);
    }

    /// <summary>The converter's does_token_look_special: added tokens like &lt;|…|&gt; are control tokens.</summary>
    private static bool LooksSpecial(string token) =>
        token is "<pad>" or "<mask>" or "<2mass>" or "[@BOS@]"
        || (token.StartsWith("<|", StringComparison.Ordinal) && token.EndsWith("|>", StringComparison.Ordinal))
        || (token.StartsWith("<｜", StringComparison.Ordinal) && token.EndsWith("｜>", StringComparison.Ordinal))   // DeepSeek's full-width bars
        || (token.StartsWith("<unused", StringComparison.Ordinal) && token.EndsWith('>'));
}
