using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Server.Engine;
using SharpTune.Serving.ToolCalls;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api.Responses;

/// <summary>One streaming event of the Responses API: its type and its fields (the sequence number is added when sent).</summary>
internal sealed record ResponseEvent(string Type, JsonObject Fields);

/// <summary>
/// A reply as Responses API output items, built as the text arrives: reasoning (a <c>reasoning</c> item), answer text
/// (a <c>message</c> item with one <c>output_text</c> part) and each tool call (a <c>function_call</c> item), in the
/// order the model wrote them. Every step also yields the events OpenAI streams for it (output_item.added,
/// content_part.added, output_text.delta, … output_item.done), so streamed and whole answers are built by the same code.
/// With <paramref name="logprobs"/> (the request included <c>message.output_text.logprobs</c>), each token's log-probability
/// goes with the text it produced: tokens whose text became answer text are listed on that text's delta event and on the
/// message's <c>output_text</c> part; tokens that wrote reasoning, tool calls or a stop string are not.
/// </summary>
internal sealed class ResponseOutput(ChatOutputParser? parser, bool parallelToolCalls, LogprobsJson? logprobs = null)
{
    private readonly List<TokenLogprob> pendingTokens = [], messageTokens = [];
    private readonly List<JsonObject> items = [];
    private readonly List<ResponseEvent> events = [];
    private readonly StringBuilder answer = new(), reasoning = new(), open = new();
    private readonly List<ToolCall> calls = [];
    private JsonObject? openItem;
    private string heldWhitespace = "";

    /// <summary>The finished output items.</summary>
    public JsonArray Items => new(items.Select(i => (JsonNode)i.DeepClone()).ToArray());

    /// <summary>True when the reply called a tool.</summary>
    public bool CalledTools => calls.Count > 0;

    /// <summary>The reply as the assistant message a later turn renders (content, tool calls with their call ids, reasoning).</summary>
    public ChatMessage AsMessage() => new("assistant", answer.ToString())
    {
        ToolCalls = calls.ToArray(),
        ReasoningContent = reasoning.Length > 0 ? reasoning.ToString() : null,
    };

    /// <summary>A generated token's log-probabilities (the engine reports a token before its text); kept when they were asked for.</summary>
    public void AddToken(TokenLogprob token)
    {
        if (logprobs is not null) pendingTokens.Add(token);
    }

    /// <summary>Adds generated text; returns the events it completes.</summary>
    public IReadOnlyList<ResponseEvent> Push(string text)
    {
        foreach (var delta in parser is null ? [new ContentDelta(text)] : parser.Push(text)) Apply(delta);
        return TakeEvents();
    }

    /// <summary>The reply ended: releases what the parser held and closes the open item.</summary>
    /// <param name="cutOff">The token budget ended it: the item it cut off (a message or a call) is "incomplete", as
    /// OpenAI marks the last output item of a response stopped by max_output_tokens.</param>
    public IReadOnlyList<ResponseEvent> Finish(bool cutOff = false)
    {
        if (parser is not null)
            foreach (var delta in parser.Finish(cutOff)) Apply(delta);
        Close(cutOff ? "incomplete" : "completed");
        return TakeEvents();
    }

    private void Apply(ChatOutputDelta delta)
    {
        switch (delta)
        {
            case ReasoningDelta r:
                pendingTokens.Clear();
                if (openItem?["type"]?.GetValue<string>() != "reasoning")
                {
                    if (string.IsNullOrWhiteSpace(r.Text)) break;   // an empty <think></think> block is no reasoning item
                    Close();
                    Open(new JsonObject { ["type"] = "reasoning", ["id"] = NewId("rs_"), ["summary"] = new JsonArray(), ["content"] = new JsonArray() });
                }
                open.Append(r.Text);
                reasoning.Append(r.Text);
                Emit("response.reasoning_text.delta", new JsonObject { ["content_index"] = 0, ["delta"] = r.Text });
                break;
            case ContentDelta c:
                if (openItem?["type"]?.GetValue<string>() != "message")
                {
                    // Whitespace between tool calls (or before the answer) opens no message of its own.
                    if (string.IsNullOrWhiteSpace(c.Text)) { heldWhitespace += c.Text; break; }
                    Close();
                    Open(new JsonObject
                    {
                        ["type"] = "message", ["id"] = NewId("msg_"), ["status"] = "in_progress", ["role"] = "assistant", ["content"] = new JsonArray(),
                    });
                    Emit("response.content_part.added", new JsonObject { ["content_index"] = 0, ["part"] = TextPart("") });
                }
                var text = heldWhitespace + c.Text;
                heldWhitespace = "";
                open.Append(text);
                answer.Append(text);
                messageTokens.AddRange(pendingTokens);
                Emit("response.output_text.delta", new JsonObject { ["content_index"] = 0, ["delta"] = text, ["logprobs"] = Logprobs(pendingTokens, withBytes: false) });
                pendingTokens.Clear();
                break;
            case ToolCallDelta t:
                pendingTokens.Clear();
                if (!parallelToolCalls && t.Index > 0) break;
                Close();
                heldWhitespace = "";
                var callId = NewId("call_");
                calls.Add(ToolCall.FromJsonText(callId, t.Call.Name, t.Call.ArgumentsJson));
                Open(new JsonObject
                {
                    ["type"] = "function_call", ["id"] = NewId("fc_"), ["call_id"] = callId, ["name"] = t.Call.Name, ["arguments"] = "", ["status"] = "in_progress",
                });
                Emit("response.function_call_arguments.delta", new JsonObject { ["delta"] = t.Call.ArgumentsJson });
                Emit("response.function_call_arguments.done", new JsonObject { ["name"] = t.Call.Name, ["arguments"] = t.Call.ArgumentsJson });
                openItem!["arguments"] = t.Call.ArgumentsJson;
                open.Append(t.Call.ArgumentsJson);
                Close(t.Call.CutOff ? "incomplete" : "completed");
                break;
        }
    }

    private void Open(JsonObject item)
    {
        openItem = item;
        open.Clear();
        events.Add(new ResponseEvent("response.output_item.added", new JsonObject { ["output_index"] = items.Count, ["item"] = item.DeepClone() }));
    }

    /// <summary>Finishes the open item: its closing events, then output_item.done with the whole item.</summary>
    private void Close(string status = "completed")
    {
        if (openItem is not { } item) return;
        var text = open.ToString();
        switch (item["type"]!.GetValue<string>())
        {
            case "message":
                Emit("response.output_text.done", new JsonObject { ["content_index"] = 0, ["text"] = text, ["logprobs"] = Logprobs(messageTokens, withBytes: false) });
                Emit("response.content_part.done", new JsonObject { ["content_index"] = 0, ["part"] = TextPart(text, messageTokens) });
                item["content"] = new JsonArray(TextPart(text, messageTokens));
                messageTokens.Clear();
                item["status"] = status;
                break;
            case "reasoning":
                Emit("response.reasoning_text.done", new JsonObject { ["content_index"] = 0, ["text"] = text });
                item["content"] = new JsonArray(new JsonObject { ["type"] = "reasoning_text", ["text"] = text });
                break;
            default:
                item["status"] = status;
                break;
        }
        events.Add(new ResponseEvent("response.output_item.done", new JsonObject { ["output_index"] = items.Count, ["item"] = item.DeepClone() }));
        items.Add(item);
        openItem = null;
    }

    /// <summary>An event about the open item (its id and output index added).</summary>
    private void Emit(string type, JsonObject fields)
    {
        var located = new JsonObject { ["item_id"] = openItem!["id"]!.GetValue<string>(), ["output_index"] = items.Count };
        foreach (var (key, value) in fields.ToList())
        {
            fields.Remove(key);
            located[key] = value;
        }
        events.Add(new ResponseEvent(type, located));
    }

    private IReadOnlyList<ResponseEvent> TakeEvents()
    {
        var taken = events.ToArray();
        events.Clear();
        return taken;
    }

    /// <summary>An output_text part; its logprobs list each token with its bytes and alternatives (empty unless asked for).</summary>
    private JsonObject TextPart(string text, IReadOnlyList<TokenLogprob>? tokens = null) => new()
    {
        ["type"] = "output_text", ["text"] = text, ["annotations"] = new JsonArray(), ["logprobs"] = Logprobs(tokens ?? [], withBytes: true),
    };

    private JsonArray Logprobs(IReadOnlyList<TokenLogprob> tokens, bool withBytes) =>
        logprobs is null ? new JsonArray() : logprobs.Responses(tokens, withBytes);

    private static string NewId(string prefix) => prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
}
