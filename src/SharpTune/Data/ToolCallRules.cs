using System.Text.Json;
using SharpTune.Tokenization;

namespace SharpTune.Data;

/// <summary>
/// The rules OpenAI's fine-tuning API applies to tool-calling conversations: every call has an id, unique in the
/// conversation; arguments given as text are a JSON object; a called function is one of the example's tools when it
/// lists any; every tool message answers an earlier call by its id, once.
/// </summary>
public static class ToolCallRules
{
    /// <summary>The first broken rule as (field, detail), or null when the conversation follows them all.</summary>
    public static (string Field, string Detail)? FirstProblem(ChatExample chat, string field = "messages")
    {
        var defined = chat.Tools?.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var calls = new Dictionary<string, string>(StringComparer.Ordinal);   // id → function name
        var answered = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < chat.Messages.Count; i++)
        {
            var message = chat.Messages[i].Message;
            var path = $"{field}[{i}]";
            if (message.ToolCalls.Count > 0 && message.Role != "assistant")
                return ($"{path}.tool_calls", $"only assistant messages may call tools, found role '{message.Role}'");
            for (int j = 0; j < message.ToolCalls.Count; j++)
            {
                var call = message.ToolCalls[j];
                var at = $"{path}.tool_calls[{j}]";
                if (string.IsNullOrEmpty(call.Id)) return ($"{at}.id", "every tool call needs an id (the tool message answering it names it in tool_call_id)");
                if (!calls.TryAdd(call.Id, call.Name)) return ($"{at}.id", $"the id '{call.Id}' is used by an earlier tool call; ids must be unique in a conversation");
                if (defined is not null && !defined.Contains(call.Name))
                    return ($"{at}.function.name", $"'{call.Name}' is not one of this example's tools ({string.Join(", ", defined)})");
                if (ArgumentsProblem(call) is { } problem) return ($"{at}.function.arguments", problem);
            }
            if (message.Role != "tool") continue;
            if (string.IsNullOrEmpty(message.ToolCallId))
                return ($"{path}.tool_call_id", "a tool message needs the id of the call it answers");
            if (!calls.ContainsKey(message.ToolCallId))
                return ($"{path}.tool_call_id", $"no earlier assistant message made a tool call with id '{message.ToolCallId}'");
            if (!answered.Add(message.ToolCallId))
                return ($"{path}.tool_call_id", $"the call '{message.ToolCallId}' is already answered by an earlier tool message");
        }
        return null;
    }

    private static string? ArgumentsProblem(ToolCall call)
    {
        if (call.Arguments is null or System.Text.Json.Nodes.JsonObject) return null;
        try
        {
            using var document = JsonDocument.Parse(call.ArgumentsJson);
            return document.RootElement.ValueKind == JsonValueKind.Object ? null
                : $"expected a JSON object as text, found JSON {document.RootElement.ValueKind.ToString().ToLowerInvariant()}";
        }
        catch (JsonException e) { return $"expected a JSON object as text, found text that is not JSON ({e.Message})"; }
    }
}
