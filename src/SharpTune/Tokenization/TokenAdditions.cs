using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>A token to add to a tokenizer: <paramref name="Special"/> ones are skipped by <c>skip_special_tokens</c>.</summary>
public sealed record NewToken(string Content, bool Special = false);

/// <summary>What adding one token did: its id, and whether it took a new id or kept one the tokenizer already had.</summary>
public sealed record AddedTokenId(string Content, int Id, bool NewId);

/// <summary>
/// Adds tokens to a Hugging Face tokenizer folder as the Rust <c>tokenizers</c> library's <c>add_tokens</c> /
/// <c>add_special_tokens</c> do (huggingface/tokenizers@02cc5359e6da7c9965579f9d964a4244d6387f2d
/// tokenizers/src/tokenizer/added_vocabulary.rs, <c>AddedVocabulary::add_tokens</c>), and writes the folder transformers'
/// <c>save_pretrained</c> would: tokenizer.json with the new <c>added_tokens</c> entries (sorted by id) and
/// tokenizer_config.json with them in <c>added_tokens_decoder</c>.
/// <para>
/// Ids: a token the tokenizer already knows (an added token, or a piece of the model's vocabulary) keeps its id and
/// becomes an added token, matched whole from then on; a new one takes the model's vocabulary size, or one past the
/// highest added id when that is already at or past it. Each token is added as Axolotl's <c>tokens:</c> and
/// <c>special_tokens:</c> add theirs, <c>AddedToken(t, rstrip=False, lstrip=False, normalized=False)</c>: it is found in
/// the raw text, never split, and the spaces around it stay with the text beside it.
/// </para>
/// </summary>
public static class TokenAdditions
{
    private static readonly JsonSerializerOptions Written = new()
    {
        WriteIndented = true,
        IndentSize = 2,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,   // as the Rust library and transformers (ensure_ascii=False) write
    };

    /// <summary>
    /// Copies the tokenizer files of <paramref name="sourceDir"/> into <paramref name="targetDir"/> with
    /// <paramref name="tokens"/> added, in order.
    /// </summary>
    /// <returns>Each token's id, in the order given.</returns>
    /// <exception cref="ArgumentException">A token is empty, or given twice with different <c>special</c> flags.</exception>
    /// <exception cref="TokenizerFormatException">tokenizer.json or tokenizer_config.json is malformed.</exception>
    public static IReadOnlyList<AddedTokenId> Write(string sourceDir, string targetDir, IReadOnlyList<NewToken> tokens)
    {
        Validate(tokens);
        var tokenizerPath = Path.Combine(sourceDir, "tokenizer.json");
        if (!File.Exists(tokenizerPath))
            throw new TokenizerFormatException(tokenizerPath, "not found; adding tokens needs the model's tokenizer.json");
        var root = ReadObject(tokenizerPath);
        var json = new JsonFields(tokenizerPath);
        var vocab = json.Object(json.Object(root["model"], "'model'")["vocab"], "model 'vocab'");
        var added = root["added_tokens"] switch
        {
            null => new JsonArray(),
            JsonArray array => array,
            var other => throw json.Error(other, "'added_tokens' must be an array"),
        };
        var entries = added.Select(item => json.Object(item, "an added token")).ToList();

        var result = new List<AddedTokenId>(tokens.Count);
        foreach (var token in tokens)
        {
            var entry = Entry(token);
            var existing = entries.FindIndex(e => json.String(e, "content") == token.Content);
            if (existing >= 0 && SameToken(entries[existing], entry))
            {
                result.Add(new AddedTokenId(token.Content, json.Int(entries[existing], "id", -1), NewId: false));
                continue;   // the Rust library ignores a token already added with these settings
            }
            int? known = existing >= 0 ? json.Int(entries[existing], "id", -1)
                : vocab[token.Content] is JsonValue v && v.TryGetValue<int>(out var modelId) ? modelId : null;
            var id = known ?? NextId(entries.Select(e => json.Int(e, "id", -1)), vocab.Count);
            entry.Insert(0, "id", id);
            var sameId = entries.FindIndex(e => json.Int(e, "id", -1) == id);
            if (sameId >= 0) entries[sameId] = entry;   // the Rust library replaces the token stored under that id
            else entries.Add(entry);
            result.Add(new AddedTokenId(token.Content, id, NewId: known is null));
        }

        // The Rust library serialises added_tokens sorted by id.
        var sorted = new JsonArray();
        foreach (var entry in entries.OrderBy(e => json.Int(e, "id", -1)))
            sorted.Add(entry.DeepClone());
        root["added_tokens"] = sorted;

        Directory.CreateDirectory(targetDir);
        Models.PretrainedModel.CopyCompanionFiles(sourceDir, targetDir);
        File.WriteAllText(Path.Combine(targetDir, "tokenizer.json"), root.ToJsonString(Written));
        WriteConfig(Path.Combine(sourceDir, "tokenizer_config.json"), Path.Combine(targetDir, "tokenizer_config.json"), sorted, json);
        return result;
    }

    /// <summary>Parses the comma-separated tokens of a command-line option (e.g. "&lt;|im_start|&gt;,&lt;|im_end|&gt;").</summary>
    /// <exception cref="ArgumentException">An entry is empty ("a,,b", a trailing comma).</exception>
    public static IReadOnlyList<string> ParseList(string text)
    {
        var tokens = text.Split(',').Select(t => t.Trim()).ToArray();
        if (tokens.Any(t => t.Length == 0))
            throw new ArgumentException($"'{text}': an empty token in the comma-separated list (a token needs at least one character)");
        return tokens;
    }

    private static void Validate(IReadOnlyList<NewToken> tokens)
    {
        foreach (var token in tokens)
            // The Rust library skips an empty token silently; here it is almost certainly a mistake in a list.
            if (string.IsNullOrEmpty(token.Content))
                throw new ArgumentException("add_tokens / add_special_tokens: a token is empty (a token needs at least one character)");
        foreach (var group in tokens.GroupBy(t => t.Content).Where(g => g.Select(t => t.Special).Distinct().Count() > 1))
            throw new ArgumentException($"'{group.Key}' is given both in add_tokens and in add_special_tokens; a token is either special or not");
    }

    /// <summary>The Rust library's next id: the model's size, or one past the highest added id at or past it.</summary>
    private static int NextId(IEnumerable<int> addedIds, int modelSize)
    {
        var max = addedIds.DefaultIfEmpty(-1).Max();
        if (max < 0) return modelSize;
        return max >= modelSize || modelSize == 0 ? max + 1 : modelSize;
    }

    /// <summary>An added_tokens entry in the Rust library's field order (id goes first, when known).</summary>
    private static JsonObject Entry(NewToken token) => new()
    {
        ["content"] = token.Content,
        ["single_word"] = false,
        ["lstrip"] = false,
        ["rstrip"] = false,
        ["normalized"] = false,
        ["special"] = token.Special,
    };

    private static bool SameToken(JsonObject stored, JsonObject entry) =>
        entry.All(kv => JsonNode.DeepEquals(stored[kv.Key] ?? DefaultOf(kv.Key, stored), kv.Value));

    /// <summary>A field an older file leaves out, as the Rust library reads it (normalized defaults to !special).</summary>
    private static JsonNode? DefaultOf(string key, JsonObject stored) => key switch
    {
        "normalized" => JsonValue.Create(!(stored["special"] is JsonValue s && s.TryGetValue<bool>(out var special) && special)),
        "special" or "single_word" or "lstrip" or "rstrip" => JsonValue.Create(false),
        _ => null,
    };

    /// <summary>
    /// tokenizer_config.json with <c>added_tokens_decoder</c> listing every added token, as transformers' save_pretrained
    /// writes it (id → {content, lstrip, normalized, rstrip, single_word, special}, sorted by id).
    /// </summary>
    private static void WriteConfig(string sourcePath, string targetPath, JsonArray addedTokens, JsonFields json)
    {
        var config = File.Exists(sourcePath) ? ReadObject(sourcePath) : new JsonObject();
        var decoder = new JsonObject();
        foreach (var item in addedTokens)
        {
            var entry = (JsonObject)item!;
            decoder[json.Int(entry, "id", -1).ToString(System.Globalization.CultureInfo.InvariantCulture)] = new JsonObject
            {
                ["content"] = entry["content"]!.DeepClone(),
                ["lstrip"] = entry["lstrip"]?.DeepClone() ?? false,
                ["normalized"] = entry["normalized"]?.DeepClone() ?? DefaultOf("normalized", entry),
                ["rstrip"] = entry["rstrip"]?.DeepClone() ?? false,
                ["single_word"] = entry["single_word"]?.DeepClone() ?? false,
                ["special"] = entry["special"]?.DeepClone() ?? false,
            };
        }
        config["added_tokens_decoder"] = decoder;
        File.WriteAllText(targetPath, config.ToJsonString(Written));
    }

    private static JsonObject ReadObject(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new TokenizerFormatException(path, "expected a JSON object at the top level");
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(path, $"invalid JSON at line {e.LineNumber + 1}: {e.Message}", e);
        }
    }
}
