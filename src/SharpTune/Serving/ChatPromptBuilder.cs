using System.Text;
using SharpTune.Tokenization;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AITextContent = Microsoft.Extensions.AI.TextContent;

namespace SharpTune.Serving;

/// <summary>A conversation turned into prompt ids, plus stop strings the prompt format implies.</summary>
internal sealed record ChatPrompt(IReadOnlyList<int> Ids, IReadOnlyList<string> ImpliedStops);

/// <summary>
/// Turns Microsoft.Extensions.AI messages into prompt token ids: through the chat template when there is one, else as the
/// raw prompt (a single user message) or a plain "Role: text" transcript.
/// </summary>
internal sealed class ChatPromptBuilder(HfTokenizer tokenizer, ChatTemplate? template)
{
    /// <summary>What a base model continues after in the transcript fallback; it then tends to write the next user turn.</summary>
    internal const string FallbackUserTurn = "\nUser:";

    public ChatTemplate? Template { get; } = template;

    public ChatPrompt Build(IEnumerable<AIChatMessage> messages)
    {
        var turns = messages.Select(ToTurn).ToList();
        if (turns.Count == 0) throw new ArgumentException("at least one chat message is required", nameof(messages));
        if (Template is not null)
        {
            // The rendered text already carries BOS where the template wants it (as transformers' apply_chat_template).
            var text = Template.Render(turns, addGenerationPrompt: true);
            return new ChatPrompt(tokenizer.Encode(text, addSpecialTokens: false), []);
        }
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

    private static ChatMessage ToTurn(AIChatMessage message, int index)
    {
        var unsupported = message.Contents.FirstOrDefault(c => c is not AITextContent);
        if (unsupported is not null)
            throw new NotSupportedException(
                $"message {index} ({message.Role}) holds {unsupported.GetType().Name}; a local text model accepts text content only");
        return new ChatMessage(message.Role.Value, message.Text);
    }
}
