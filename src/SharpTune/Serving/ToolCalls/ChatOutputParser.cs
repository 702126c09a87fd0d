namespace SharpTune.Serving.ToolCalls;

/// <summary>A piece of an assistant reply as it streams: reasoning text, content text, or a complete tool call.</summary>
public abstract record ChatOutputDelta;

/// <summary>Reasoning (the inside of a &lt;think&gt; block), as vLLM's and DeepSeek's <c>reasoning_content</c>.</summary>
public sealed record ReasoningDelta(string Text) : ChatOutputDelta;

/// <summary>Answer text.</summary>
public sealed record ContentDelta(string Text) : ChatOutputDelta;

/// <summary>A tool call, complete, with its position among the reply's calls.</summary>
public sealed record ToolCallDelta(int Index, ParsedToolCall Call) : ChatOutputDelta;

/// <summary>
/// Splits an assistant reply, fed piece by piece as it is generated, into reasoning, content and tool calls. Text that
/// could be the start of a marker (&lt;/think&gt;, &lt;tool_call&gt;) is held back until it is known; a tool call is
/// released whole once its closing marker (or the end of the reply) arrives; output that claims to be a call but does
/// not parse is released as content, so no text is lost. With <paramref name="reasoning"/>, a reply that opens with
/// &lt;think&gt; — or any reply when <paramref name="startsInsideReasoning"/> (the prompt ended by opening the block, as
/// DeepSeek-R1's template does) — has its reasoning split out up to &lt;/think&gt;.
/// </summary>
public sealed class ChatOutputParser(ToolCallFormat? tools, bool reasoning, bool startsInsideReasoning = false)
{
    private const string ThinkOpen = "<think>", ThinkClose = "</think>";

    private enum Mode { Start, Reasoning, Content, Calls }

    private readonly System.Text.StringBuilder pending = new();
    private Mode mode = !reasoning ? Mode.Content : startsInsideReasoning ? Mode.Reasoning : Mode.Start;
    private int callCount;
    private bool contentStarted, contentEmitted;

    /// <summary>Tool calls released so far.</summary>
    public int CallCount => callCount;

    /// <summary>Adds generated text; returns what can be released now.</summary>
    public IReadOnlyList<ChatOutputDelta> Push(string text)
    {
        pending.Append(text);
        return Drain(final: false);
    }

    /// <summary>The reply ended: releases everything still held.</summary>
    /// <param name="cutOff">
    /// The token budget ended the reply. A tool call it cut off is then released as a call with the arguments written
    /// so far, as OpenAI returns a call cut by <c>max_tokens</c> (with finish reason "length"), once its name is whole;
    /// otherwise, as for a reply that ended on its own, output that does not parse as calls is content.
    /// </param>
    public IReadOnlyList<ChatOutputDelta> Finish(bool cutOff = false)
    {
        this.cutOff = cutOff;
        return Drain(final: true);
    }

    private bool cutOff;

    /// <summary>The calls in <paramref name="block"/>, read as cut off when the budget ended the reply inside them.</summary>
    private (string Content, IReadOnlyList<ParsedToolCall> Calls) ParseCalls(string block, bool final)
    {
        var parsed = tools!.Parse(block);
        return parsed.Calls.Count == 0 && final && cutOff && tools.ParseCutOff(block) is { } cut ? cut : parsed;
    }

    private List<ChatOutputDelta> Drain(bool final)
    {
        var output = new List<ChatOutputDelta>();
        while (true)
        {
            var text = pending.ToString();
            switch (mode)
            {
                case Mode.Start:
                    // The template may open <think> in the prompt (Qwen3, DeepSeek-R1): then the reply starts inside it.
                    var trimmed = text.TrimStart();
                    if (trimmed.StartsWith(ThinkOpen, StringComparison.Ordinal)) { Take(text.Length - trimmed.Length + ThinkOpen.Length); mode = Mode.Reasoning; continue; }
                    if (!final && ThinkOpen.StartsWith(trimmed, StringComparison.Ordinal)) return output;
                    mode = Mode.Content;
                    continue;
                case Mode.Reasoning:
                    var close = text.IndexOf(ThinkClose, StringComparison.Ordinal);
                    if (close >= 0)
                    {
                        if (close > 0) output.Add(new ReasoningDelta(text[..close]));
                        Take(close + ThinkClose.Length);
                        mode = Mode.Content;
                        continue;
                    }
                    if (final)
                    {
                        // No closing tag: the model never reasoned (a template that does not think) — it was content.
                        pending.Clear();
                        mode = Mode.Content;
                        pending.Append(text);
                        continue;
                    }
                    return output;
                case Mode.Content:
                    if (!contentStarted)
                    {
                        var start = text.TrimStart();
                        if (start.Length == 0 && !final) return output;
                        Take(text.Length - start.Length);
                        text = start;
                        contentStarted = start.Length > 0;
                    }
                    var at = CallStart(text);
                    if (at >= 0)
                    {
                        if (at > 0) { output.Add(new ContentDelta(text[..at])); contentEmitted = true; }
                        Take(at);
                        mode = Mode.Calls;
                        continue;
                    }
                    var keep = final ? 0 : HeldBack(text);
                    if (text.Length - keep > 0) { output.Add(new ContentDelta(text[..^keep])); contentEmitted = true; }
                    Take(text.Length - keep);
                    return output;
                default:
                    if (tools!.EndMarker is { } end)
                    {
                        var close2 = text.IndexOf(end, StringComparison.Ordinal);
                        if (close2 < 0 && !final) return output;
                        var block = close2 < 0 ? text : text[..(close2 + end.Length)];
                        var (rest, calls) = ParseCalls(block, final && close2 < 0);
                        if (calls.Count == 0) output.Add(new ContentDelta(block));
                        foreach (var call in calls) output.Add(new ToolCallDelta(callCount++, call));
                        // The newlines a template writes between and after calls are no content (vLLM's hermes parser
                        // keeps only the text before the first call); text written after a call still is.
                        if (calls.Count > 0) contentStarted = false;
                        _ = rest;
                        Take(block.Length);
                        mode = Mode.Content;
                        if (pending.Length == 0) return output;
                        continue;
                    }
                    if (!final) return output;
                    var (content, parsed) = ParseCalls(text, final: true);
                    if (parsed.Count == 0) output.Add(new ContentDelta(content));
                    else
                    {
                        if (content.Length > 0) output.Add(new ContentDelta(content));
                        foreach (var call in parsed) output.Add(new ToolCallDelta(callCount++, call));
                    }
                    pending.Clear();
                    return output;
            }
        }
    }

    /// <summary>Where tool calls begin in <paramref name="text"/>, or -1.</summary>
    private int CallStart(string text)
    {
        if (tools is null) return -1;
        if (tools.StartMarker is { } marker) return text.IndexOf(marker, StringComparison.Ordinal);
        // Llama JSON and pythonic: the whole reply is calls, maybe after a tag (<|python_tag|>, <|python_start|>), as vLLM's
        // llama3_json and pythonic parsers stream them.
        return callCount == 0 && !contentEmitted && tools.ReplyOpeners.Any(o => text.StartsWith(o, StringComparison.Ordinal)) ? 0 : -1;
    }

    /// <summary>How much of the end of <paramref name="text"/> could still become a marker.</summary>
    private int HeldBack(string text)
    {
        var markers = new List<string>();
        if (tools?.StartMarker is { } start) markers.Add(start);
        else if (tools is not null && callCount == 0 && !contentEmitted && tools.ReplyOpeners.Any(o => o.StartsWith(text, StringComparison.Ordinal)))
            return text.Length;   // the reply so far could be the start of the tag that opens calls (<|python_tag|>)
        var keep = 0;
        foreach (var marker in markers)
            for (var n = Math.Min(text.Length, marker.Length - 1); n > keep; n--)
                if (text.EndsWith(marker[..n], StringComparison.Ordinal)) { keep = n; break; }
        return keep;
    }

    private void Take(int count) => pending.Remove(0, count);
}
