using Microsoft.Extensions.AI;
using SharpTune.Generation;
using SharpTune.Serving.ToolCalls;

namespace SharpTune.Serving;

/// <summary>
/// A local model's reply as Microsoft.Extensions.AI contents while it is generated: reasoning as
/// <see cref="TextReasoningContent"/>, answer text as <see cref="TextContent"/>, each tool call as
/// <see cref="FunctionCallContent"/> (only the first when parallel calls are off), and the finish reason
/// <see cref="ChatFinishReason.ToolCalls"/> when the reply called a tool and ended on its own.
/// </summary>
internal sealed class ReplyContents(ChatOutputParser? parser, bool parallelCalls)
{
    private int calls;

    /// <summary>False when the reply is plain text (no tools to parse, no reasoning template): pieces pass through unchanged.</summary>
    public bool Parses => parser is not null;

    public IReadOnlyList<AIContent> Push(string text) => Map(parser!.Push(text));

    public IReadOnlyList<AIContent> Finish() => parser is null ? [] : Map(parser.Finish());

    public ChatFinishReason FinishReasonFor(FinishReason reason) =>
        reason == FinishReason.Length ? ChatFinishReason.Length : calls > 0 ? ChatFinishReason.ToolCalls : ChatFinishReason.Stop;

    /// <summary>Joins neighbouring text (and reasoning) pieces, so a whole reply holds one content of each run.</summary>
    public static IList<AIContent> Merge(IEnumerable<AIContent> contents)
    {
        var merged = new List<AIContent>();
        foreach (var content in contents)
            switch (content, merged.LastOrDefault())
            {
                case (TextContent t, TextContent last): merged[^1] = new TextContent(last.Text + t.Text); break;
                case (TextReasoningContent r, TextReasoningContent last): merged[^1] = new TextReasoningContent(last.Text + r.Text); break;
                default: merged.Add(content); break;
            }
        return merged;
    }

    private List<AIContent> Map(IReadOnlyList<ChatOutputDelta> deltas)
    {
        var contents = new List<AIContent>();
        foreach (var delta in deltas)
        {
            if (delta is ToolCallDelta call)
            {
                if (!parallelCalls && call.Index > 0) continue;
                calls++;
            }
            contents.Add(ChatContentMapping.ToContent(delta));
        }
        return contents;
    }
}
