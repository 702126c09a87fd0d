using System.Text.Json.Nodes;
using SharpTune.Tokenization;
using static SharpTune.Server.Api.CompletionRequestParser;

namespace SharpTune.Server.Api.Responses;

/// <summary>
/// Responses API input items as the chat messages a template renders: a <c>message</c> item is a message (developer
/// becomes system, which every template knows), <c>function_call</c> items join the assistant message before them as
/// its tool calls (as Chat Completions carries them), <c>function_call_output</c> is a tool message, and a
/// <c>reasoning</c> item becomes the next assistant message's reasoning.
/// </summary>
internal static class ResponseInputItems
{
    /// <exception cref="ApiException">400 naming the item's field.</exception>
    public static IReadOnlyList<ChatMessage> ToMessages(JsonArray items)
    {
        var messages = new List<ChatMessage>();
        string? reasoning = null;
        for (var i = 0; i < items.Count; i++)
        {
            var field = $"input[{i}]";
            if (items[i] is not JsonObject item) throw ApiException.BadField(field, $"'{field}' must be an input item object");
            var type = item["type"] is null && item["role"] is not null ? "message" : RequiredString(item, "type", field + ".type");
            switch (type)
            {
                case "message":
                    var message = Message(item, field);
                    if (message.Role == "assistant" && reasoning is not null) { message = message with { ReasoningContent = reasoning }; reasoning = null; }
                    messages.Add(message);
                    break;
                case "function_call":
                    var call = ToolCall.FromJsonText(RequiredString(item, "call_id", field + ".call_id"), RequiredString(item, "name", field + ".name"),
                        RequiredString(item, "arguments", field + ".arguments"));
                    if (messages.Count > 0 && messages[^1].Role == "assistant" && reasoning is null)
                        messages[^1] = messages[^1] with { ToolCalls = [.. messages[^1].ToolCalls, call] };
                    else
                    {
                        messages.Add(new ChatMessage("assistant", "") { ToolCalls = [call], ReasoningContent = reasoning, ContentIsNull = true });
                        reasoning = null;
                    }
                    break;
                case "function_call_output":
                    messages.Add(ChatMessage.ToolResult(RequiredString(item, "call_id", field + ".call_id"), Output(item, field)));
                    break;
                case "reasoning":
                    reasoning = Reasoning(item);
                    break;
                default:
                    throw ApiException.BadField(field + ".type",
                        $"'{field}.type' is '{type}'; this server takes message, function_call, function_call_output and reasoning items");
            }
        }
        return messages;
    }

    /// <summary>Names each tool message after the call it answers (some templates print the function's name).</summary>
    public static List<ChatMessage> NameToolResults(IEnumerable<ChatMessage> conversation)
    {
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        var result = new List<ChatMessage>();
        foreach (var message in conversation)
        {
            foreach (var call in message.ToolCalls)
                if (call.Id is not null) names[call.Id] = call.Name;
            result.Add(message.Role == "tool" && message.Name is null && message.ToolCallId is { } id && names.TryGetValue(id, out var name)
                ? message with { Name = name } : message);
        }
        return result;
    }

    private static ChatMessage Message(JsonObject item, string field)
    {
        var role = RequiredString(item, "role", field + ".role");
        if (role is not ("user" or "system" or "developer" or "assistant"))
            throw ApiException.BadField(field + ".role", $"'{field}.role' is '{role}'; expected user, system, developer or assistant");
        var text = item["content"] switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonArray parts => string.Join("\n", parts.Select((part, j) => PartText(part, $"{field}.content[{j}]"))),
            _ => throw ApiException.BadField(field + ".content", $"'{field}.content' must be a string or an array of content parts"),
        };
        return new ChatMessage(role == "developer" ? "system" : role, text);
    }

    private static string PartText(JsonNode? part, string field)
    {
        if (part is not JsonObject obj) throw ApiException.BadField(field, $"'{field}' must be a content part object");
        var type = RequiredString(obj, "type", field + ".type");
        return type switch
        {
            "input_text" or "output_text" or "text" => RequiredString(obj, "text", field + ".text"),
            "refusal" => RequiredString(obj, "refusal", field + ".refusal"),
            _ => throw ApiException.BadField(field + ".type", $"'{field}.type' is '{type}'; this server's models read text parts only (input_text, output_text)"),
        };
    }

    private static string Output(JsonObject item, string field) => item["output"] switch
    {
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonArray parts => string.Join("\n", parts.Select((part, j) => PartText(part, $"{field}.output[{j}]"))),
        null => throw ApiException.BadField(field + ".output", $"required field '{field}.output' is missing"),
        _ => throw ApiException.BadField(field + ".output", $"'{field}.output' must be a string or an array of content parts"),
    };

    private static string? Reasoning(JsonObject item)
    {
        var parts = (item["content"] as JsonArray ?? item["summary"] as JsonArray)?
            .Select(p => p?["text"] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null).OfType<string>().ToList();
        return parts is { Count: > 0 } ? string.Join("\n", parts) : null;
    }
}
