using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>
/// Extra chat-template variables (<c>chat_template_kwargs</c>, e.g. Qwen3's <c>{"enable_thinking": false}</c>): read from
/// JSON the way vLLM's chat completion request and TRL's datasets carry them, and layered as vLLM layers a request's over
/// the server's defaults. Every front end (server, in-process client, CLI, training config and data rows) reads them here.
/// </summary>
public static class ChatTemplateArguments
{
    /// <summary>The field's name in requests, data rows and configs: <c>chat_template_kwargs</c>.</summary>
    public const string FieldName = "chat_template_kwargs";

    /// <summary>
    /// apply_chat_template's own parameters, which vLLM refuses among a request's template variables (its
    /// resolve_chat_template_kwargs) and transformers would see twice.
    /// </summary>
    private static readonly string[] Reserved = ["chat_template", "tokenize"];

    /// <summary>
    /// The variables in <paramref name="node"/>, a JSON object; null when the node is absent or JSON null.
    /// </summary>
    /// <exception cref="ChatFormatException">The node is not an object, or names a reserved key; the message names <paramref name="field"/>.</exception>
    public static IReadOnlyDictionary<string, object?>? FromJson(JsonNode? node, string field)
    {
        if (node is null) return null;
        if (node is not JsonObject obj)
            throw new ChatFormatException(field, "wrong_type",
                $"expected an object of chat template variables (e.g. {{\"enable_thinking\": false}}), found {ChatJson.Kind(node)}");
        foreach (var key in Reserved)
            if (obj.ContainsKey(key))
                throw new ChatFormatException($"{field}.{key}", "invalid_value",
                    $"'{key}' is a parameter of apply_chat_template, not a template variable; remove it");
        return obj.ToDictionary(p => p.Key, p => ChatTemplateValues.FromJson(p.Value));
    }

    /// <summary>The variables in <paramref name="json"/>, JSON text such as <c>{"enable_thinking": false}</c> (a command-line
    /// or config value); null when it is null or empty.</summary>
    /// <exception cref="ChatFormatException">Not valid JSON, not an object, or a reserved key; the message names <paramref name="field"/>.</exception>
    public static IReadOnlyDictionary<string, object?>? Parse(string? json, string field)
    {
        if (string.IsNullOrWhiteSpace(json)) return null;
        JsonNode? node;
        try { node = JsonNode.Parse(json); }
        catch (JsonException e) { throw new ChatFormatException(field, "invalid_value", $"expected a JSON object such as {{\"enable_thinking\": false}}, found invalid JSON: {e.Message}"); }
        return FromJson(node, field) ?? throw new ChatFormatException(field, "wrong_type", "expected a JSON object, found null");
    }

    /// <summary>
    /// The variables in a .NET value: a dictionary of string keys (values of any JSON-serialisable type), a
    /// <see cref="JsonElement"/>/<see cref="JsonNode"/> object, or JSON text; null when <paramref name="value"/> is null.
    /// For Microsoft.Extensions.AI's <c>ChatOptions.AdditionalProperties["chat_template_kwargs"]</c>.
    /// </summary>
    /// <exception cref="ChatFormatException">The value is not object-shaped; the message names <paramref name="field"/>.</exception>
    public static IReadOnlyDictionary<string, object?>? FromObject(object? value, string field) => value switch
    {
        null => null,
        string json => Parse(json, field),
        JsonNode node => FromJson(node, field),
        JsonElement { ValueKind: JsonValueKind.Null or JsonValueKind.Undefined } => null,
        _ => FromJson(JsonSerializer.SerializeToNode(value, value.GetType()), field),
    };

    /// <summary>
    /// <paramref name="overrides"/> laid over <paramref name="defaults"/>, as vLLM merges a request's
    /// <c>chat_template_kwargs</c> over <c>--default-chat-template-kwargs</c> (its merge_kwargs): an override whose value is
    /// null (JSON null) or "auto" leaves the default in place. Null when both are null.
    /// </summary>
    public static IReadOnlyDictionary<string, object?>? Merge(IReadOnlyDictionary<string, object?>? defaults, IReadOnlyDictionary<string, object?>? overrides)
    {
        if (overrides is null || overrides.Count == 0) return defaults;
        if (defaults is null || defaults.Count == 0) return overrides;
        var merged = new Dictionary<string, object?>(defaults);
        foreach (var (key, value) in overrides)
            if (value is not (null or "auto")) merged[key] = value;
        return merged;
    }
}
