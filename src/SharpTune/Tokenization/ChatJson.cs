using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>A chat message or tool list that does not have OpenAI's shape: names the field (e.g. <c>messages[2].tool_calls[0].function.name</c>).</summary>
public sealed class ChatFormatException(string field, string reason, string detail) : Exception($"field '{field}': {detail}")
{
    /// <summary>The offending field's path.</summary>
    public string Field { get; } = field;

    /// <summary>A short machine-readable reason: missing_field, wrong_type, empty_field or invalid_value.</summary>
    public string Reason { get; } = reason;

    /// <summary>What was expected and what was found.</summary>
    public string Detail { get; } = detail;
}

/// <summary>
/// Reads chat messages and tool lists as OpenAI writes them (and as transformers' chat examples write them): assistant
/// <c>tool_calls</c> (<c>{"id","type","function":{"name","arguments"}}</c>, arguments a JSON string or an object, or the
/// call without the <c>function</c> wrapper), <c>tool</c> messages with <c>tool_call_id</c>/<c>name</c>, content parts,
/// <c>reasoning_content</c>; OpenAI's legacy <c>function_call</c> and <c>function</c>-role messages become tool calls and
/// tool messages, and a legacy <c>functions</c> list becomes tools.
/// </summary>
public static class ChatJson
{
    /// <summary>Reads an array of messages at <paramref name="field"/> (e.g. "messages").</summary>
    /// <exception cref="ChatFormatException">A message is not an object, lacks a role, or has a mistyped field.</exception>
    public static IReadOnlyList<ChatMessage> ReadMessages(JsonNode? node, string field)
    {
        if (node is not JsonArray array)
            throw new ChatFormatException(field, node is null ? "missing_field" : "wrong_type", $"expected an array of messages, found {Kind(node)}");
        if (array.Count == 0) throw new ChatFormatException(field, "empty_field", "expected at least one message, found an empty array");
        var messages = new List<ChatMessage>(array.Count);
        var legacyCalls = 0;
        for (int i = 0; i < array.Count; i++)
        {
            var path = $"{field}[{i}]";
            if (array[i] is not JsonObject obj) throw new ChatFormatException(path, "wrong_type", $"expected a message object, found {Kind(array[i])}");
            var message = ReadMessage(obj, path);
            if (obj["function_call"] is { } call)
            {
                if (message.ToolCalls.Count > 0)
                    throw new ChatFormatException(path + ".function_call", "invalid_value", "a message carries either tool_calls or the legacy function_call, not both");
                message = message with { ToolCalls = [ReadLegacyCall(call, path + ".function_call", legacyCalls++)] };
            }
            if (message.Role == "function") message = FromLegacyFunctionResult(message, messages, path);
            messages.Add(message);
        }
        return messages;
    }

    /// <summary>Reads one message object found at <paramref name="path"/> (legacy fields are converted by <see cref="ReadMessages"/>).</summary>
    public static ChatMessage ReadMessage(JsonObject obj, string path)
    {
        var role = String(obj, "role", path) ?? throw new ChatFormatException(path + ".role", "missing_field", "expected a role (system, user, assistant or tool), found nothing");
        if (role.Length == 0) throw new ChatFormatException(path + ".role", "empty_field", "expected a role (system, user, assistant or tool)");
        var toolCalls = ReadToolCalls(obj["tool_calls"], path + ".tool_calls");
        var (content, parts) = ReadContent(obj["content"], path + ".content");
        if (content is null && !(role == "assistant" && (toolCalls.Count > 0 || obj["function_call"] is not null)))
            throw new ChatFormatException(path + ".content", obj.ContainsKey("content") ? "wrong_type" : "missing_field",
                role == "assistant" ? "expected a string (an assistant message may omit content only when it has tool_calls), found " + Kind(obj["content"])
                                    : "expected a string or a list of content parts, found " + Kind(obj["content"]));
        return new ChatMessage(role, content ?? "")
        {
            ContentIsNull = content is null,
            ToolCalls = toolCalls,
            ContentParts = parts,
            ToolCallId = String(obj, "tool_call_id", path),
            Name = String(obj, "name", path),
            ReasoningContent = String(obj, "reasoning_content", path) ?? String(obj, "reasoning", path),
            OtherFields = OtherFields(obj),
        };
    }

    /// <summary>The fields of a message object this reader does not interpret, copied; null when there are none.</summary>
    private static JsonObject? OtherFields(JsonObject obj)
    {
        JsonObject? other = null;
        foreach (var (key, value) in obj)
            if (!MessageFields.Contains(key)) (other ??= [])[key] = value?.DeepClone();
        return other;
    }

    private static readonly HashSet<string> MessageFields =
        ["role", "content", "tool_calls", "tool_call_id", "name", "reasoning_content", "reasoning", "function_call"];

    /// <summary>
    /// Reads a per-example tool list: <c>tools</c> (OpenAI's <c>{"type":"function","function":{…}}</c> entries; an entry
    /// without the wrapper is accepted as transformers accepts it) or, when <paramref name="legacyFunctions"/> is given,
    /// OpenAI's legacy <c>functions</c> list, converted to tools. Null when neither is present.
    /// </summary>
    public static IReadOnlyList<ChatTool>? ReadTools(JsonNode? tools, string field, JsonNode? legacyFunctions = null, string legacyField = "functions")
    {
        if (tools is not null && legacyFunctions is not null)
            throw new ChatFormatException(legacyField, "invalid_value", "give either 'tools' or the legacy 'functions', not both");
        if (tools is null && legacyFunctions is null) return null;
        var (node, path, legacy) = tools is not null ? (tools, field, false) : (legacyFunctions!, legacyField, true);
        if (node is not JsonArray array) throw new ChatFormatException(path, "wrong_type", $"expected an array of tools, found {Kind(node)}");
        var result = new List<ChatTool>(array.Count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < array.Count; i++)
        {
            var at = $"{path}[{i}]";
            if (array[i] is not JsonObject entry) throw new ChatFormatException(at, "wrong_type", $"expected a tool object, found {Kind(array[i])}");
            ChatTool tool;
            if (legacy) tool = FunctionTool(entry, at, definition: null);
            else
            {
                var type = String(entry, "type", at);
                if (type is not null and not "function")
                    throw new ChatFormatException(at + ".type", "invalid_value", $"expected \"function\", found \"{type}\"");
                if (entry["function"] is { } function)
                {
                    var canonical = InCanonicalOrder(function as JsonObject
                        ?? throw new ChatFormatException(at + ".function", "wrong_type", $"expected an object, found {Kind(function)}"));
                    var definition = new JsonObject();
                    if (entry.ContainsKey("type")) definition["type"] = entry["type"]?.DeepClone();
                    definition["function"] = canonical;
                    foreach (var (key, value) in entry)
                        if (key is not ("type" or "function")) definition[key] = value?.DeepClone();
                    tool = FunctionTool(canonical, at + ".function", definition);
                }
                else
                {
                    var canonical = InCanonicalOrder(entry);
                    tool = FunctionTool(canonical, at, canonical);
                }
            }
            if (!names.Add(tool.Name)) throw new ChatFormatException(at, "invalid_value", $"the function name '{tool.Name}' is defined twice");
            result.Add(tool);
        }
        return result;
    }

    /// <summary>
    /// A function definition with its keys in one order — name, description, parameters, then any others as given — the
    /// order of OpenAI's documentation, Hugging Face's <c>get_json_schema</c> and vLLM's request model. Templates render a
    /// definition as JSON text, and clients serialize keys in their own order (the OpenAI .NET SDK writes the description
    /// first): without this, the same tool in a request and in the training lines made different prompts.
    /// </summary>
    private static JsonObject InCanonicalOrder(JsonObject function)
    {
        string[] first = ["name", "description", "parameters"];
        var ordered = new JsonObject();
        foreach (var key in first)
            if (function.ContainsKey(key)) ordered[key] = function[key]?.DeepClone();
        foreach (var (key, value) in function)
            if (!first.Contains(key)) ordered[key] = value?.DeepClone();
        return ordered;
    }

    /// <summary>OpenAI's wire form of a message (what a client sends): role, content, tool_calls, tool_call_id, name, reasoning_content.</summary>
    public static JsonObject ToJson(ChatMessage message)
    {
        var obj = new JsonObject { ["role"] = message.Role };
        obj["content"] = message.ContentParts is { } parts ? new JsonArray(parts.Select(p => (JsonNode)p.Part.DeepClone()).ToArray())
            : message.ContentIsNull || (message.Content.Length == 0 && message.ToolCalls.Count > 0) ? null : message.Content;
        if (message.ToolCalls.Count > 0)
            obj["tool_calls"] = new JsonArray(message.ToolCalls.Select(c => (JsonNode)new JsonObject
            {
                ["id"] = c.Id, ["type"] = c.Type,
                ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = c.Arguments?.DeepClone() },
            }).ToArray());
        if (message.ToolCallId is not null) obj["tool_call_id"] = message.ToolCallId;
        if (message.Name is not null) obj["name"] = message.Name;
        if (message.ReasoningContent is not null) obj["reasoning_content"] = message.ReasoningContent;
        foreach (var (key, value) in message.OtherFields ?? []) obj[key] ??= value?.DeepClone();
        return obj;
    }

    private static ChatTool FunctionTool(JsonObject function, string path, JsonObject? definition)
    {
        var name = String(function, "name", path) ?? throw new ChatFormatException(path + ".name", "missing_field", "expected the function's name, found nothing");
        if (name.Length == 0) throw new ChatFormatException(path + ".name", "empty_field", "expected the function's name, found an empty string");
        var parameters = function["parameters"] switch
        {
            null => null,
            JsonObject o => o,
            var other => throw new ChatFormatException(path + ".parameters", "wrong_type", $"expected a JSON schema object, found {Kind(other)}"),
        };
        var description = String(function, "description", path);
        return definition is null ? ChatTool.Function(name, description, parameters) : new ChatTool(name, description, parameters, definition);
    }

    private static IReadOnlyList<ToolCall> ReadToolCalls(JsonNode? node, string path)
    {
        switch (node)
        {
            case null: return [];
            case JsonArray array:
                return array.Select((item, i) => ReadCall(item, $"{path}[{i}]", null, wrapped: true)).ToArray();
            default: throw new ChatFormatException(path, "wrong_type", $"expected an array of tool calls, found {Kind(node)}");
        }
    }

    /// <summary>
    /// A legacy call <c>{"name","arguments"}</c> (OpenAI's <c>function_call</c>, or one call of a ShareGPT
    /// <c>function_call</c> turn), which carries no id: it gets <c>call_N</c>, N counting such calls in its conversation.
    /// </summary>
    internal static ToolCall ReadLegacyCall(JsonNode? node, string path, int indexInConversation) =>
        ReadCall(node, path, $"call_{indexInConversation}", wrapped: false);

    /// <summary>A call <c>{"id","type","function":{"name","arguments"}}</c>, or <c>{"name","arguments"}</c> itself.</summary>
    private static ToolCall ReadCall(JsonNode? node, string path, string? defaultId, bool wrapped)
    {
        if (node is not JsonObject call) throw new ChatFormatException(path, "wrong_type", $"expected a tool call object, found {Kind(node)}");
        var id = wrapped ? String(call, "id", path) : defaultId;
        var type = wrapped ? String(call, "type", path) : null;
        if (type is not null and not "function") throw new ChatFormatException(path + ".type", "invalid_value", $"expected \"function\", found \"{type}\"");
        var (function, functionPath) = wrapped && call["function"] is { } f
            ? (f as JsonObject ?? throw new ChatFormatException(path + ".function", "wrong_type", $"expected an object, found {Kind(f)}"), path + ".function")
            : (call, path);
        var name = String(function, "name", functionPath)
            ?? throw new ChatFormatException(functionPath + ".name", "missing_field", "expected the called function's name, found nothing");
        if (name.Length == 0) throw new ChatFormatException(functionPath + ".name", "empty_field", "expected the called function's name, found an empty string");
        var arguments = function["arguments"] switch
        {
            null => null,
            JsonObject o => o.DeepClone(),
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.DeepClone(),
            var other => throw new ChatFormatException(functionPath + ".arguments", "wrong_type", $"expected a JSON string or an object, found {Kind(other)}"),
        };
        return new ToolCall(id, name, arguments);
    }

    private static (string? Text, IReadOnlyList<ChatContentPart>? Parts) ReadContent(JsonNode? node, string path)
    {
        switch (node)
        {
            case null: return (null, null);
            case JsonValue v when v.GetValueKind() == JsonValueKind.String: return (v.GetValue<string>(), null);
            case JsonArray array:
                var parts = new List<ChatContentPart>(array.Count);
                for (int i = 0; i < array.Count; i++)
                {
                    var at = $"{path}[{i}]";
                    if (array[i] is not JsonObject part) throw new ChatFormatException(at, "wrong_type", $"expected a content part object, found {Kind(array[i])}");
                    var type = String(part, "type", at) ?? throw new ChatFormatException(at + ".type", "missing_field", "expected the part's type (e.g. \"text\"), found nothing");
                    var chatPart = new ChatContentPart(type, part);
                    if (type is "text" && chatPart.Text is null)
                        throw new ChatFormatException(at + ".text", "wrong_type", $"expected a string, found {Kind(part["text"])}");
                    parts.Add(chatPart);
                }
                return (string.Join("\n", parts.Select(p => p.Text).OfType<string>()), parts);
            default: throw new ChatFormatException(path, "wrong_type", $"expected a string, found {Kind(node)} (content may also be a list of content parts)");
        }
    }

    /// <summary>A legacy <c>{"role":"function","name":…}</c> result becomes a tool message answering the latest call of that name.</summary>
    private static ChatMessage FromLegacyFunctionResult(ChatMessage message, List<ChatMessage> earlier, string path)
    {
        var name = message.Name ?? throw new ChatFormatException(path + ".name", "missing_field", "a function message needs the function's name");
        var answered = earlier.Where(m => m.Role == "tool").Select(m => m.ToolCallId).ToHashSet();
        var call = earlier.Where(m => m.Role == "assistant").SelectMany(m => m.ToolCalls)
            .LastOrDefault(c => c.Name == name && !answered.Contains(c.Id));
        return message with { Role = "tool", ToolCallId = message.ToolCallId ?? call?.Id };
    }

    private static string? String(JsonObject obj, string key, string path) => obj[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        var other => throw new ChatFormatException($"{path}.{key}", "wrong_type", $"expected a string, found {Kind(other)}"),
    };

    internal static string Kind(JsonNode? node) => node is null ? "null" : node.GetValueKind().ToString().ToLowerInvariant();
}
