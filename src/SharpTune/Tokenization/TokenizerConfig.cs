using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>What tokenizer_config.json, special_tokens_map.json and chat_template.jinja say beside tokenizer.json.</summary>
internal sealed record TokenizerConfig(
    string? BosToken, string? EosToken, string? PadToken, string? UnkToken,
    bool? AddBosToken, bool? AddEosToken, string? ChatTemplate, string? ToolUseChatTemplate = null)
{
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
            Flag("add_bos_token"), Flag("add_eos_token"), template, toolUse);
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
