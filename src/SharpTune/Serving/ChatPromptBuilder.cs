using System.Text;
using SharpTune.Tokenization;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace SharpTune.Serving;

/// <summary>A conversation turned into prompt ids, plus stop strings the prompt format implies.</summary>
/// <param name="EndsInsideReasoning">The rendering ends by opening a &lt;think&gt; block (the reply starts inside it).</param>
internal sealed record ChatPrompt(IReadOnlyList<int> Ids, IReadOnlyList<string> ImpliedStops, bool EndsInsideReasoning = false);

/// <summary>
/// Turns Microsoft.Extensions.AI messages into prompt token ids: through the chat template when there is one (with the
/// tools, tool calls and tool results it renders), else as the raw prompt (a single user message) or a plain
/// "Role: text" transcript.
/// </summary>
internal sealed class ChatPromptBuilder(HfTokenizer tokenizer, ChatTemplate? template)
{
    /// <summary>What a base model continues after in the transcript fallback; it then tends to write the next user turn.</summary>
    internal const string FallbackUserTurn = "\nUser:";

    public ChatTemplate? Template { get; } = template;

    /// <param name="templateArguments">Chat template variables for this request, over the template's own
    /// <see cref="ChatTemplate.Arguments"/>; without a template there is nothing to give them to.</param>
    public ChatPrompt Build(IEnumerable<AIChatMessage> messages, IReadOnlyList<ChatTool>? tools = null, string? instructions = null,
        IReadOnlyDictionary<string, object?>? templateArguments = null)
    {
        var turns = ChatContentMapping.ToTurns(messages);
        if (turns.Count == 0) throw new ArgumentException("at least one chat message is required", nameof(messages));
        if (instructions is not null) turns.Insert(0, new ChatMessage("system", instructions));
        if (Template is not null)
        {
            // The rendered text already carries BOS where the template wants it (as transformers' apply_chat_template).
            var text = Template.Render(turns, addGenerationPrompt: true, tools, templateArguments);
            return new ChatPrompt(tokenizer.Encode(text, addSpecialTokens: false), EndOfTurn.StopStrings(Template, tokenizer),
                text.TrimEnd().EndsWith("<think>", StringComparison.Ordinal));
        }
        if (tools is not null || turns.Any(t => t.ToolCalls.Count > 0 || t.Role == "tool"))
            throw new NotSupportedException(
                "ChatOptions.Tools: tool calling needs a chat template that renders tools (the model's tokenizer has none); " +
                "set LocalChatClientOptions.ChatTemplate");
        if (turns.Count == 1 && turns[0].Role == "user")
            return new ChatPrompt(tokenizer.Encode(turns[0].Content, addSpecialTokens: true), []);
        return new ChatPrompt(tokenizer.Encode(Transcript(turns), addSpecialTokens: true), [FallbackUserTurn]);
    }

    /// <summary>"System: …\nUser: …\nAssistant: …\nAssistant:" — the format used when the tokenizer has no chat template.</summary>
    internal static string Transcript(IReadOnlyList<ChatMessage> turns)
    {
        var text = new StringBuilder();
        foreach (var turn in turns)
            text.Append(Capitalise(turn.Role)).Append(": ").Append(turn.Content).Append('\n');
        return text.Append("Assistant:").ToString();
    }

    private static string Capitalise(string role) => role.Length == 0 ? role : char.ToUpperInvariant(role[0]) + role[1..];
}
