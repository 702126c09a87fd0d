using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SharpTune.Tokenization;

/// <summary>
/// What a chat template receives, shaped as transformers' <c>apply_chat_template</c> passes it: each message a dict with
/// <c>role</c> and <c>content</c> (a null content as None where the template tests for it, see <see cref="TestsContentForNone"/>), plus <c>tool_calls</c> (<c>{"id","type","function":{"name","arguments"}}</c>, arguments
/// as the data holds them), <c>tool_call_id</c>, <c>name</c> and <c>reasoning_content</c> only where the message has
/// them (templates test <c>'tool_calls' in message</c> and <c>is defined</c>); <c>tools</c> as the list of tool
/// definitions, or none.
/// </summary>
internal static partial class ChatTemplateValues
{
    /// <summary>
    /// Whether a template iterates over a message's content parts (Gemma 3's does): such templates receive content
    /// lists as lists; the others receive the parts' text joined, as vLLM decides from the template itself.
    /// </summary>
    public static bool IteratesContentParts(string source) => ContentLoop().IsMatch(source);

    [GeneratedRegex(@"\{%-?\s*for\s+\w+\s+in\s+\w+\s*(\.\s*content\b|\[\s*['""]content['""]\s*\])")]
    private static partial Regex ContentLoop();

    /// <summary>
    /// Whether a template tells a none content from an empty one (<c>message['content'] is none</c>, as DeepSeek's does to
    /// write an assistant turn's tool calls): such templates receive a null content as None, as transformers passes it.
    /// The others receive "", as vLLM passes it: many (Qwen3's, Qwen1.5's, InternLM's) read the content as a string —
    /// <c>'&lt;/think&gt;' in message.content</c> — and fail on None under transformers too.
    /// </summary>
    public static bool TestsContentForNone(string source) => NoneContentTest().IsMatch(source);

    [GeneratedRegex(@"(?<!\w)content\s*(['""]\s*\])?\s*(is\s+(not\s+)?none\b|[!=]=\s*none\b)", RegexOptions.IgnoreCase)]
    private static partial Regex NoneContentTest();

    public static List<object?> Messages(IReadOnlyList<ChatMessage> messages, bool contentParts, bool noneContent = false) =>
        messages.Select(m => (object?)Message(m, contentParts, noneContent)).ToList();

    public static Dictionary<string, object?> Message(ChatMessage message, bool contentParts, bool noneContent = false)
    {
        var dict = new Dictionary<string, object?>
        {
            ["role"] = message.Role,
            ["content"] = contentParts && message.ContentParts is { } parts ? parts.Select(p => FromJson(p.Part)).ToList()
                : message.ContentIsNull && noneContent ? null
                : message.Content,
        };
        if (message.ToolCalls.Count > 0) dict["tool_calls"] = message.ToolCalls.Select(c => (object?)ToolCall(c)).ToList();
        if (message.ToolCallId is not null) dict["tool_call_id"] = message.ToolCallId;
        if (message.Name is not null) dict["name"] = message.Name;
        if (message.ReasoningContent is not null) dict["reasoning_content"] = message.ReasoningContent;
        foreach (var (key, value) in message.OtherFields ?? []) dict.TryAdd(key, FromJson(value));
        return dict;
    }

    public static List<object?>? Tools(IReadOnlyList<ChatTool>? tools) =>
        tools is null or { Count: 0 } ? null : tools.Select(t => FromJson(t.Definition)).ToList();

    private static Dictionary<string, object?> ToolCall(ToolCall call)
    {
        var dict = new Dictionary<string, object?>();
        if (call.Id is not null) dict["id"] = call.Id;
        dict["type"] = call.Type;
        dict["function"] = new Dictionary<string, object?> { ["name"] = call.Name, ["arguments"] = FromJson(call.Arguments) };
        return dict;
    }

    /// <summary>JSON as Python's json.loads gives it: objects in key order, integers as ints, other numbers as floats.</summary>
    public static object? FromJson(JsonNode? node) => node switch
    {
        null => null,
        JsonObject o => o.ToDictionary(p => p.Key, p => FromJson(p.Value)),
        JsonArray a => a.Select(FromJson).ToList(),
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => v.GetValue<string>(),
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Null => null,
            JsonValueKind.Number => Number(v),
            var kind => throw new ChatTemplateException($"cannot pass a JSON {kind} to a template"),
        },
        _ => null,
    };

    private static object Number(JsonValue v)
    {
        var text = v.ToJsonString();
        if (!text.Contains('.') && !text.Contains('e') && !text.Contains('E') && long.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var l)) return l;
        return double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
    }
}
