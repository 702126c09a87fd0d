using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>
/// One message of a conversation as OpenAI's chat format writes it. <paramref name="Role"/> is "system", "developer",
/// "user", "assistant" or "tool" (templates may accept others). <paramref name="Content"/> is the message's text: a
/// string content as given, the text parts of a content-part list joined with newlines, and "" when the data holds none
/// or null (an assistant message that only calls tools; see <see cref="ContentIsNull"/>).
/// </summary>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>
    /// The data gave no content (null, or left out, as an assistant message that only calls tools may). A chat template
    /// that tests the content for none (DeepSeek's writes the tool calls only then) receives None, as transformers passes
    /// it; the others "", as vLLM passes it (see ChatTemplateValues). <see cref="Content"/> is "" either way.
    /// </summary>
    public bool ContentIsNull { get; init; }

    /// <summary>
    /// The message's other fields, as the data gave them (gpt-oss's <c>thinking</c>, a dataset's own keys): chat templates
    /// receive them as transformers passes a message dict, whole; null when there are none.
    /// </summary>
    public JsonObject? OtherFields { get; init; }

    /// <summary>The function calls an assistant message makes, in order; empty when it makes none.</summary>
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];

    /// <summary>On a tool message: the id of the call it answers.</summary>
    public string? ToolCallId { get; init; }

    /// <summary>On a tool message: the function's name; on other messages: the participant's name. Null when absent.</summary>
    public string? Name { get; init; }

    /// <summary>The assistant's reasoning when the data holds it apart from the content (vLLM's and DeepSeek's field);
    /// reasoning written inline as <c>&lt;think&gt;…&lt;/think&gt;</c> stays in <see cref="Content"/>, where templates look for it.</summary>
    public string? ReasoningContent { get; init; }

    /// <summary>
    /// The content as a list of parts (<c>{"type":"text","text":…}</c>, <c>{"type":"image_url",…}</c>, …) when the data
    /// gave it that way; templates that iterate over content parts (Gemma 3's) receive this list, others the joined text.
    /// </summary>
    public IReadOnlyList<ChatContentPart>? ContentParts { get; init; }

    /// <summary>An assistant message that calls tools.</summary>
    public static ChatMessage AssistantToolCalls(string content, params ToolCall[] calls) => new("assistant", content) { ToolCalls = calls };

    /// <summary>A tool result answering call <paramref name="toolCallId"/>.</summary>
    public static ChatMessage ToolResult(string toolCallId, string content, string? name = null) =>
        new("tool", content) { ToolCallId = toolCallId, Name = name };
}

/// <summary>
/// One function call made by an assistant message. <paramref name="Arguments"/> is what the data holds: a JSON string
/// value (as OpenAI clients send it) or a JSON object (as transformers' chat examples write it); templates receive it
/// unchanged (DESIGN §8), so a template that handles both — Qwen3's — renders both.
/// </summary>
public sealed record ToolCall(string? Id, string Name, JsonNode? Arguments)
{
    /// <summary>Always "function" today (OpenAI's only tool type for calls).</summary>
    public string Type { get; init; } = "function";

    /// <summary>The arguments as JSON text: the string itself when given as a string, else the object serialised.</summary>
    public string ArgumentsJson => Arguments switch
    {
        null => "{}",
        JsonValue v when v.TryGetValue<string>(out var text) => text,
        var node => node.ToJsonString(),
    };

    /// <summary>A call whose arguments are given as JSON text (OpenAI's wire form).</summary>
    public static ToolCall FromJsonText(string? id, string name, string argumentsJson) => new(id, name, JsonValue.Create(argumentsJson));
}

/// <summary>One part of a content-part list; <see cref="Part"/> keeps every field the data gave.</summary>
public sealed record ChatContentPart(string Type, JsonObject Part)
{
    /// <summary>The text of a "text" part (also OpenAI's "input_text"/"output_text"); null for other parts.</summary>
    public string? Text => Type is "text" or "input_text" or "output_text" && Part["text"] is JsonValue v && v.TryGetValue<string>(out var t) ? t : null;

    /// <summary>A text part.</summary>
    public static ChatContentPart FromText(string text) => new("text", new JsonObject { ["type"] = "text", ["text"] = text });
}

/// <summary>
/// A function the model may call, as OpenAI's <c>tools</c> list describes it:
/// <c>{"type":"function","function":{"name","description","parameters"}}</c>. <see cref="Definition"/> is the whole
/// entry as given; templates receive it unchanged (transformers passes tool dicts through as they are).
/// </summary>
public sealed record ChatTool(string Name, string? Description, JsonObject? Parameters, JsonObject Definition)
{
    /// <summary>A function tool from its parts, in OpenAI's shape.</summary>
    public static ChatTool Function(string name, string? description, JsonObject? parameters)
    {
        var function = new JsonObject { ["name"] = name };
        if (description is not null) function["description"] = description;
        if (parameters is not null) function["parameters"] = parameters.DeepClone();
        return new ChatTool(name, description, parameters, new JsonObject { ["type"] = "function", ["function"] = function });
    }
}

/// <summary>Character range [Start, End) of one assistant turn in a rendering: what the model writes for that turn
/// (content, tool calls and the end-of-turn marker), without the header the generation prompt supplies.</summary>
public readonly record struct AssistantSpan(int MessageIndex, int Start, int End);

/// <summary>A rendered conversation and where each assistant reply lies in it (what training supervises).</summary>
public sealed record RenderedChat(string Text, IReadOnlyList<AssistantSpan> AssistantSpans);

/// <summary>A chat template is missing, outside the supported Jinja subset, or rejected the conversation.</summary>
public sealed class ChatTemplateException(string message, Exception? inner = null) : Exception(message, inner);
