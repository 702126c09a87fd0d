using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using SharpTune.Generation.Constrained;
using SharpTune.Serving.ToolCalls;
using SharpTune.Tokenization;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatMessage = SharpTune.Tokenization.ChatMessage;

namespace SharpTune.Serving;

/// <summary>
/// Microsoft.Extensions.AI's chat contents and options as the chat data model templates render: function declarations as
/// tools, <see cref="FunctionCallContent"/> as an assistant's tool calls (arguments as an object, as transformers passes
/// them), <see cref="FunctionResultContent"/> as tool messages, reasoning as reasoning_content; and back: the parsed
/// reply's reasoning, text and calls as contents.
/// </summary>
internal static class ChatContentMapping
{
    /// <summary>The conversation as template turns; a message holding several function results becomes one tool turn each.</summary>
    /// <exception cref="NotSupportedException">A message holds content a text model cannot read (images, audio, …).</exception>
    public static List<ChatMessage> ToTurns(IEnumerable<AIChatMessage> messages)
    {
        var turns = new List<ChatMessage>();
        var callNames = new Dictionary<string, string>(StringComparer.Ordinal);
        var index = 0;
        foreach (var message in messages)
        {
            var text = new List<string>();
            var calls = new List<ToolCall>();
            string? reasoning = null;
            foreach (var content in message.Contents)
                switch (content)
                {
                    case TextContent t: text.Add(t.Text); break;
                    case TextReasoningContent r: reasoning = (reasoning ?? "") + r.Text; break;
                    case FunctionCallContent call:
                        callNames[call.CallId] = call.Name;
                        calls.Add(new ToolCall(call.CallId, call.Name, JsonSerializer.SerializeToNode(call.Arguments ?? new Dictionary<string, object?>(),
                            AIJsonUtilities.DefaultOptions) as JsonObject ?? new JsonObject()));
                        break;
                    case FunctionResultContent result:
                        turns.Add(ChatMessage.ToolResult(result.CallId, ResultText(result), callNames.GetValueOrDefault(result.CallId)));
                        break;
                    case UsageContent: break;   // accounting carried along in a returned message, not part of the conversation
                    default:
                        throw new NotSupportedException(
                            $"message {index} ({message.Role}) holds {content.GetType().Name}; a local text model accepts text, function calls and function results");
                }
            if (text.Count > 0 || calls.Count > 0 || reasoning is not null || message.Contents.Count == 0)
                turns.Add(new ChatMessage(message.Role.Value, string.Concat(text))
                {
                    ToolCalls = calls, ReasoningContent = reasoning,
                    ContentIsNull = text.Count == 0 && calls.Count > 0,   // a turn of calls only: content None, as OpenAI clients send null
                });
            index++;
        }
        return turns;
    }

    /// <summary>Function declarations as template tools; null when there are none.</summary>
    /// <exception cref="NotSupportedException">A tool is not a function (a hosted tool the local model cannot run).</exception>
    public static IReadOnlyList<ChatTool>? Tools(ChatOptions? options)
    {
        if (options?.Tools is not { Count: > 0 } tools) return null;
        return tools.Select(tool => tool is AIFunctionDeclaration function
            ? ChatTool.Function(function.Name, string.IsNullOrEmpty(function.Description) ? null : function.Description,
                function.JsonSchema.ValueKind == JsonValueKind.Object ? JsonNode.Parse(function.JsonSchema.GetRawText()) as JsonObject : null)
            : throw new NotSupportedException($"ChatOptions.Tools: '{tool.Name}' ({tool.GetType().Name}) is not a function; the local chat client calls functions only"))
            .ToArray();
    }

    /// <summary>
    /// What constrains the reply: a required tool mode forces a call in the template's format (to the named function, or
    /// any of <paramref name="tools"/>); else a JSON response format forces JSON (valid for its schema when it has one).
    /// </summary>
    public static ConstrainedGrammar? Grammar(ChatOptions? options, IReadOnlyList<ChatTool>? tools, ToolCallFormat format)
    {
        if (options?.ToolMode is RequiredChatToolMode required && tools is not null)
        {
            var callable = tools.Where(t => required.RequiredFunctionName is null || t.Name == required.RequiredFunctionName).ToArray();
            if (callable.Length == 0)
                throw new ArgumentException($"ChatOptions.ToolMode requires the function '{required.RequiredFunctionName}', which is not in ChatOptions.Tools",
                    nameof(options));
            return format.RequiredCallGrammar(callable.Select(t => (t.Name, t.Parameters)).ToArray());
        }
        if (options?.ResponseFormat is not ChatResponseFormatJson json) return null;
        if (json.Schema is not { } schema) return ConstrainedGrammar.JsonObject;
        try { return ConstrainedGrammar.FromSchema(JsonNode.Parse(schema.GetRawText()), strict: false); }
        catch (JsonSchemaException e) { throw new ArgumentException($"ChatOptions.ResponseFormat: the JSON schema cannot constrain decoding: {e.Message}", nameof(options), e); }
    }

    /// <summary>A parsed piece of the reply as Microsoft.Extensions.AI content.</summary>
    public static AIContent ToContent(ChatOutputDelta delta) => delta switch
    {
        ReasoningDelta r => new TextReasoningContent(r.Text),
        ToolCallDelta call => ToFunctionCall(call.Call),
        ContentDelta c => new TextContent(c.Text),
        _ => throw new ArgumentOutOfRangeException(nameof(delta)),
    };

    /// <summary>A parsed call; arguments that are not a JSON object are carried as the call's exception, as Microsoft.Extensions.AI's own clients do.</summary>
    private static FunctionCallContent ToFunctionCall(ParsedToolCall call) =>
        FunctionCallContent.CreateFromParsedArguments(call.ArgumentsJson, "call_" + Guid.NewGuid().ToString("N")[..24], call.Name,
            json => JsonSerializer.Deserialize<Dictionary<string, object?>>(json, AIJsonUtilities.DefaultOptions));

    private static string ResultText(FunctionResultContent result) => result.Result switch
    {
        null => result.Exception is { } e ? $"Error: {e.Message}" : "",
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } s => s.GetString()!,
        var other => JsonSerializer.Serialize(other, AIJsonUtilities.DefaultOptions),
    };
}
