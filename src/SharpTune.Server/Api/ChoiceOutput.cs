using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Server.Engine;
using SharpTune.Serving.ToolCalls;

namespace SharpTune.Server.Api;

/// <summary>How one request's output is turned into OpenAI's shapes: tool-call format, reasoning split, logprobs, echo.</summary>
/// <param name="LegacyFunctionCall">The request gave the legacy <c>functions</c>: one call, as <c>function_call</c>.</param>
/// <param name="NamedToolChoice">The request forced a call of one named function (finish_reason "stop", as OpenAI and vLLM report it).</param>
internal sealed record OutputSettings(ToolCallFormat? Tools, bool Reasons, bool InsideReasoning, bool ParallelToolCalls,
    LogprobsJson Logprobs, IReadOnlyList<IReadOnlyList<int>> PromptIds, IReadOnlyList<string>? EchoPrompts, bool LegacyFunctionCall = false,
    bool NamedToolChoice = false);

/// <summary>
/// One choice's output as it arrives from the engine: the text (split into reasoning, content and tool calls when the
/// request has tools or the template reasons), its tokens' log-probabilities, the finish reason; built whole or as
/// streamed chunks the way OpenAI streams them (a tool call as a first delta with id, type and name, then its arguments).
/// </summary>
internal sealed class ChoiceOutput(OutputSettings settings, int promptIndex)
{
    private readonly ChatOutputParser? parser = settings.Tools is not null || settings.Reasons
        ? new ChatOutputParser(settings.Tools, settings.Reasons, settings.InsideReasoning) : null;
    private readonly StringBuilder text = new();
    private readonly List<TokenLogprob> tokens = [];
    private readonly List<TokenLogprob> pending = [];
    private string finish = "stop";
    private int calls;
    private bool echoed;
    private int streamed;

    /// <summary>The prompt's log-probabilities (echo with logprobs).</summary>
    public PromptLogprobs? Prompt { get; set; }

    /// <summary>Collects an event for a whole (non-streamed) answer.</summary>
    public void Add(RowEvent item)
    {
        switch (item)
        {
            case RowText t: text.Append(t.Text); break;
            case RowToken k: tokens.Add(k.Token); break;
            case RowFinished f: finish = f.FinishReason; break;
        }
    }

    public JsonObject WholeChatChoice(int index, bool logprobs)
    {
        var deltas = parser is null ? [new ContentDelta(text.ToString())] : parser.Push(text.ToString()).Concat(parser.Finish(cutOff: finish == "length")).ToList();
        var content = string.Concat(deltas.OfType<ContentDelta>().Select(d => d.Text));
        var reasoning = string.Concat(deltas.OfType<ReasoningDelta>().Select(d => d.Text));
        var toolCalls = deltas.OfType<ToolCallDelta>().Where(d => Parallel || d.Index == 0).ToList();
        var message = new JsonObject
        {
            ["role"] = "assistant",
            ["content"] = content.Length == 0 && toolCalls.Count > 0 ? null : content,
            ["refusal"] = null,
        };
        if (settings.Reasons) message["reasoning_content"] = reasoning.Length > 0 ? reasoning : null;
        if (toolCalls.Count > 0 && settings.LegacyFunctionCall)
            message["function_call"] = new JsonObject { ["name"] = toolCalls[0].Call.Name, ["arguments"] = toolCalls[0].Call.ArgumentsJson };
        else if (toolCalls.Count > 0)
            message["tool_calls"] = new JsonArray(toolCalls.Select(c => (JsonNode)new JsonObject
            {
                ["id"] = NewCallId(),
                ["type"] = "function",
                ["function"] = new JsonObject { ["name"] = c.Call.Name, ["arguments"] = c.Call.ArgumentsJson },
            }).ToArray());
        return ResponseShapes.ChatChoice(index, message, logprobs ? settings.Logprobs.Chat(tokens) : null, Finish(toolCalls.Count));
    }

    public JsonObject WholeTextChoice(int index, bool logprobs)
    {
        var prefix = settings.EchoPrompts?[promptIndex] ?? "";
        var entries = new List<(int, TokenLogprob?)>();
        if (settings.EchoPrompts is not null && Prompt is { } prompt)
            entries.AddRange(settings.PromptIds[promptIndex].Select((id, i) => (id, prompt.Tokens[i])));
        entries.AddRange(tokens.Select(t => (t.Id, (TokenLogprob?)t)));
        return ResponseShapes.TextChoice(index, prefix + text, logprobs ? settings.Logprobs.Completion(entries, 0) : null, finish);
    }

    /// <summary>The chunks (delta, logprobs, finish reason) an event yields in a chat stream.</summary>
    public IEnumerable<(JsonNode Delta, JsonNode? Logprobs, string? Finish)> StreamChat(RowEvent item, bool logprobs)
    {
        switch (item)
        {
            case RowToken k:
                pending.Add(k.Token);
                break;
            case RowText t:
                foreach (var chunk in ChatDeltas(parser is null ? [new ContentDelta(t.Text)] : parser.Push(t.Text), logprobs)) yield return chunk;
                break;
            case RowFinished f:
                if (parser is not null)
                    foreach (var chunk in ChatDeltas(parser.Finish(cutOff: f.FinishReason == "length"), logprobs)) yield return chunk;
                finish = f.FinishReason;
                yield return (new JsonObject(), TakeLogprobs(logprobs), Finish(calls));
                break;
        }
    }

    /// <summary>The chunks (text, logprobs, finish reason) an event yields in a text-completion stream.</summary>
    public IEnumerable<(JsonNode Delta, JsonNode? Logprobs, string? Finish)> StreamText(RowEvent item, bool logprobs)
    {
        switch (item)
        {
            case RowToken k:
                pending.Add(k.Token);
                break;
            case RowText t:
                yield return TextChunk(t.Text, logprobs, null);
                break;
            case RowFinished f:
                yield return TextChunk("", logprobs, f.FinishReason);
                break;
        }
    }

    /// <summary>
    /// One text-completion chunk, as vLLM streams them: the first carries the echoed prompt (and, with logprobs, the
    /// prompt's tokens, as the whole answer does); each chunk's text_offset continues from the text already streamed.
    /// </summary>
    private (JsonNode, JsonNode?, string?) TextChunk(string generated, bool logprobs, string? finish)
    {
        var entries = new List<(int, TokenLogprob?)>();
        var text = generated;
        if (!echoed && settings.EchoPrompts is { } echo)
        {
            text = echo[promptIndex] + generated;
            if (Prompt is { } prompt)
                entries.AddRange(settings.PromptIds[promptIndex].Select((id, i) => (id, prompt.Tokens[i])));
        }
        echoed = true;
        entries.AddRange(pending.Select(p => (p.Id, (TokenLogprob?)p)));
        pending.Clear();
        var json = logprobs && (entries.Count > 0 || finish is null) ? settings.Logprobs.Completion(entries, streamed) : null;
        streamed += text.Length;
        return (JsonValue.Create(text), json, finish);
    }

    private IEnumerable<(JsonNode, JsonNode?, string?)> ChatDeltas(IReadOnlyList<ChatOutputDelta> deltas, bool logprobs)
    {
        foreach (var delta in deltas)
        {
            switch (delta)
            {
                case ContentDelta c when c.Text.Length > 0:
                    yield return (new JsonObject { ["content"] = c.Text }, TakeLogprobs(logprobs), null);
                    break;
                case ReasoningDelta r when r.Text.Length > 0:
                    yield return (new JsonObject { ["reasoning_content"] = r.Text }, TakeLogprobs(logprobs), null);
                    break;
                case ToolCallDelta call when settings.LegacyFunctionCall && call.Index == 0:
                    calls++;
                    yield return (new JsonObject { ["function_call"] = new JsonObject { ["name"] = call.Call.Name, ["arguments"] = "" } }, TakeLogprobs(logprobs), null);
                    yield return (new JsonObject { ["function_call"] = new JsonObject { ["arguments"] = call.Call.ArgumentsJson } }, null, null);
                    break;
                case ToolCallDelta call when Parallel || call.Index == 0:
                    calls++;
                    yield return (ToolCallChunk(new JsonObject
                    {
                        ["index"] = call.Index, ["id"] = NewCallId(), ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = call.Call.Name, ["arguments"] = "" },
                    }), TakeLogprobs(logprobs), null);
                    yield return (ToolCallChunk(new JsonObject
                    {
                        ["index"] = call.Index, ["function"] = new JsonObject { ["arguments"] = call.Call.ArgumentsJson },
                    }), null, null);
                    break;
            }
        }
    }

    private static JsonObject ToolCallChunk(JsonObject call) => new() { ["tool_calls"] = new JsonArray(call) };

    private JsonNode? TakeLogprobs(bool logprobs)
    {
        if (!logprobs || pending.Count == 0) return null;
        var json = settings.Logprobs.Chat(pending);
        pending.Clear();
        return json;
    }

    /// <summary>Every call of the reply is answered (a legacy function call is one call).</summary>
    private bool Parallel => settings.ParallelToolCalls && !settings.LegacyFunctionCall;

    /// <summary>
    /// "tool_calls" ("function_call" for the legacy functions) when the reply called and ended on its own, as OpenAI
    /// reports it; a call forced by naming the function stays "stop", as OpenAI reports it and vLLM's Python and Rust
    /// servers do (vllm-project/vllm#49496: "Named calls now return stop, while auto and required return tool_calls").
    /// </summary>
    private string Finish(int callCount) => callCount > 0 && finish == "stop" && !settings.NamedToolChoice
        ? (settings.LegacyFunctionCall ? "function_call" : "tool_calls") : finish;

    private static string NewCallId() => "call_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
}
