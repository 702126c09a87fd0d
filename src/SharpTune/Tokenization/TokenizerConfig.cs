using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>What tokenizer_config.json, special_tokens_map.json and chat_template.jinja say beside tokenizer.json.</summary>
internal sealed record TokenizerConfig(
    string? BosToken, string? EosToken, string? PadToken, string? UnkToken,
    bool? AddBosToken, bool? AddEosToken, string? ChatTemplate, string? ToolUseChatTemplate = null, string? TokenizerClass = null)
{
    /// <summary>
    /// Whether transformers rebuilds the post-processor from add_bos_token/add_eos_token for this tokenizer_class: only the
    /// fast tokenizers that define update_post_processor do (LlamaTokenizerFast, huggingface/transformers@cbeb5d01b54d6cbbc4193a792dbe9a824588681a
    /// src/transformers/models/llama/tokenization_llama_fast.py, and CodeLlama's and Gemma's, copied from it; CohereTokenizerFast,
    /// @49800f79297e4689b0dfea05640ecd164ac4dafb models/cohere/tokenization_cohere_fast.py). Others (Qwen2TokenizerFast,
    /// @e536f6a3c62b018d9b0b3a417135646bbf7634f7 models/qwen2/tokenization_qwen2_fast.py; PreTrainedTokenizerFast,
    /// @2520420bd460a1bf5518b21bfe7f4b5ecd981a81 tokenization_utils_fast.py) keep tokenizer.json's. A config without
    /// tokenizer_class is read as rebuilding, as SharpTune always has.
    /// </summary>
    public bool FlagsRebuildPostProcessor => TokenizerClass is null
        || RebuildingClasses.Contains(TokenizerClass.EndsWith("Fast", StringComparison.Ordinal) ? TokenizerClass[..^4] : TokenizerClass);

    private static readonly HashSet<string> RebuildingClasses = new(StringComparer.Ordinal) { "LlamaTokenizer", "CodeLlamaTokenizer", "GemmaTokenizer", "CohereTokenizer" };

    /// <summary>The file transformers saves a tokenizer's chat template in (it wins over tokenizer_config.json's).</summary>
    public const string TemplateFileName = "chat_template.jinja";

    /// <summary>Where transformers (4.50 on) saves a tokenizer's named templates beside chat_template.jinja.</summary>
    public const string AdditionalTemplatesFolder = "additional_chat_templates";

    /// <summary>The saved "tool_use" template of a folder (see <see cref="AdditionalTemplatesFolder"/>).</summary>
    public static string ToolUseTemplatePath(string dir) => Path.Combine(dir, AdditionalTemplatesFolder, "tool_use.jinja");

    /// <summary>The template files saved in <paramref name="dir"/> (chat_template.jinja, the tool_use one), null where absent.</summary>
    public static (string? Template, string? ToolUse) ReadTemplateFiles(string dir)
    {
        string? Text(string path) => File.Exists(path) ? File.ReadAllText(path) : null;
        return (Text(Path.Combine(dir, TemplateFileName)), Text(ToolUseTemplatePath(dir)));
    }

    public static TokenizerConfig Read(string dir)
    {
        var configPath = Path.Combine(dir, "tokenizer_config.json");
        var mapPath = Path.Combine(dir, "special_tokens_map.json");
        var config = ReadObject(configPath);
        var map = ReadObject(mapPath);
        var configFields = new JsonFields(configPath);

        string? Token(string name) => TokenText(config?[name], configFields) ?? TokenText(map?[name], new JsonFields(mapPath));
        bool? Flag(string name) => config?[name] is JsonValue v && v.TryGetValue<bool>(out var b) ? b : null;

        var saved = ReadTemplateFiles(dir);
        var template = saved.Template ?? ChatTemplateText(config?["chat_template"], configFields, "default");
        var toolUse = saved.ToolUse
            ?? (config?["chat_template"] is JsonArray ? ChatTemplateText(config["chat_template"], configFields, "tool_use", fallBack: false) : null);
        return new TokenizerConfig(Token("bos_token"), Token("eos_token"), Token("pad_token"), Token("unk_token"),
            Flag("add_bos_token"), Flag("add_eos_token"), template, toolUse,
            config?["tokenizer_class"] is JsonValue c && c.TryGetValue<string>(out var tokenizerClass) ? tokenizerClass : null);
    }

    private static JsonObject? ReadObject(string path)
    {
        if (!File.Exists(path)) return null;
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

    /// <summary>Special tokens are written as a string or as {"content": "...", ...} (AddedToken form).</summary>
    private static string? TokenText(JsonNode? node, JsonFields json) => node switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonObject o => json.String(o, "content"),
        _ => throw json.Error(node, "a special token must be a string or an object with 'content'"),
    };

    /// <summary>
    /// A single template string, or from a list of {name, template} the one called <paramref name="name"/> (for
    /// "default", else the first, as older transformers did; for another name, null when absent).
    /// </summary>
    private static string? ChatTemplateText(JsonNode? node, JsonFields json, string name, bool fallBack = true)
    {
        switch (node)
        {
            case null: return null;
            case JsonValue v when v.TryGetValue<string>(out var s): return s;
            case JsonArray list:
                var named = list.Select(item => json.Object(item, "a chat_template entry"))
                    .Select(o => (Name: json.String(o, "name"), Template: json.String(o, "template"))).ToList();
                if (named.Count == 0) return null;
                return named.FirstOrDefault(t => t.Name == name).Template ?? (fallBack ? named[0].Template : null);
            default: throw json.Error(node, "chat_template must be a string or a list of {name, template}");
        }
    }
}
