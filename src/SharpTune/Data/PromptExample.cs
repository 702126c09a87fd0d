using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data;

/// <summary>
/// A prompt to sample completions for (GRPO, reinforcement fine-tuning), with the row's other fields for the reward
/// functions to read (e.g. <c>answer</c>). Accepts TRL's <c>{"prompt": "…" | [messages]}</c> and OpenAI's reinforcement
/// fine-tuning rows <c>{"messages": [...], …}</c> and ShareGPT rows <c>{"conversations": [...], …}</c> (a trailing
/// assistant turn is not part of the prompt: it becomes the <c>answer</c> field when the row has none).
/// </summary>
public sealed record PromptExample(IReadOnlyList<ChatTurn> Prompt, JsonObject Fields) : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Completion;

    public override string TrainingText => string.Join("\n", Prompt.Select(m => m.Content));

    /// <summary>The prompt came as a plain string: rendered as text with BOS, not through the chat template (as TRL).</summary>
    public bool PlainText { get; init; }

    /// <summary>"file:line" of the row, for error messages about this prompt.</summary>
    public string Location { get; init; } = "";

    /// <summary>The row as a prompt; a missing or mistyped field names file, line and field.</summary>
    public static PromptExample FromRow(DataRow row) => FromRow(row, "grpo");

    /// <summary>The row as a prompt for <paramref name="objective"/> (grpo, rloo or online-dpo, named in the error for a row without one).</summary>
    public static PromptExample FromRow(DataRow row, string objective)
    {
        if (row.Fields["prompt"] is JsonValue text && text.GetValueKind() == JsonValueKind.String)
            return new PromptExample([new ChatTurn("user", text.GetValue<string>())], row.Fields) { PlainText = true, Location = row.Location };
        if (row.Fields["prompt"] is JsonArray turns)
            return new PromptExample(TrainingExampleMapper.Messages(row, turns, "prompt"), row.Fields) { Location = row.Location };
        var shareGpt = ShareGptConversation.IsShareGpt(row.Fields);
        if (row.Fields.ContainsKey("messages") || shareGpt)
        {
            var messages = shareGpt
                ? ShareGptConversation.Turns(row, ShareGptConversation.Ending.Either, out _)
                : TrainingExampleMapper.Messages(row, row.Fields["messages"], "messages");
            var fields = row.Fields;
            if (messages[^1].Role == "assistant")
            {
                // A supervised chat file works as is: its final answer becomes the reference the rewards compare with.
                if (!fields.ContainsKey("answer"))
                {
                    fields = (JsonObject)fields.DeepClone();
                    fields["answer"] = messages[^1].Content;
                }
                messages = messages.Take(messages.Count - 1).ToArray();
            }
            if (messages.Count == 0)
                throw TrainingExampleMapper.Error(row, shareGpt ? ShareGptConversation.Field : "messages", "empty_field", "no prompt turns before the answer");
            return new PromptExample(messages, fields) { Location = row.Location };
        }
        throw TrainingExampleMapper.Error(row, row.Fields.ContainsKey("prompt") ? "prompt" : "messages",
            row.Fields.ContainsKey("prompt") ? "wrong_type" : "missing_field",
            $"objective {objective} needs a prompt on every row: {{\"prompt\": \"…\"}}, {{\"prompt\": [messages]}} or {{\"messages\": [...]}}");
    }
}
