using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Data;

/// <summary>
/// KTO's unpaired preference: a prompt, one completion, and whether that completion is desirable (TRL's
/// <c>{"prompt", "completion", "label": true|false}</c>; prompt and completion are strings or message arrays).
/// </summary>
public sealed record UnpairedPreferenceExample(IReadOnlyList<ChatTurn> Prompt, IReadOnlyList<ChatTurn> Completion, bool Desirable)
    : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Preference;

    public override string TrainingText => string.Join("\n", Prompt.Concat(Completion).Select(m => m.Content));

    public override string? Label => Desirable ? "true" : "false";

    /// <summary>The prompt came as a plain string, so it is rendered as plain text even when a chat template exists (as TRL).</summary>
    public bool PlainText { get; init; }

    /// <summary>The row's own <c>tools</c>, rendered by the chat template with the prompt (as TRL); null when it has none.</summary>
    public IReadOnlyList<ChatTool>? Tools { get; init; }

    /// <summary>The row's own <c>chat_template_kwargs</c> (TRL's per-row column), over the run's; null when it has none.</summary>
    public IReadOnlyDictionary<string, object?>? TemplateArguments { get; init; }

    /// <summary>The row as an unpaired preference; a missing or mistyped field names file, line and field.</summary>
    public static UnpairedPreferenceExample FromRow(DataRow row)
    {
        foreach (var field in new[] { "prompt", "completion", "label" })
            if (!row.Fields.ContainsKey(field))
                throw TrainingExampleMapper.Error(row, field, "missing_field",
                    "KTO needs {\"prompt\", \"completion\", \"label\": true|false} on every row");
        var plain = row.Fields["prompt"] is not JsonArray;
        var prompt = plain
            ? [new ChatTurn("user", row.Fields["prompt"] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
                : throw TrainingExampleMapper.Error(row, "prompt", "wrong_type", $"expected a string or messages, found {TrainingExampleMapper.Kind(row.Fields["prompt"])}"))]
            : TrainingExampleMapper.Messages(row, row.Fields["prompt"], "prompt");
        var label = row.Fields["label"] is JsonValue l && l.GetValueKind() is JsonValueKind.True or JsonValueKind.False
            ? l.GetValue<bool>()
            : throw TrainingExampleMapper.Error(row, "label", "wrong_type", $"expected true or false, found {row.Fields["label"]?.ToJsonString() ?? "null"}");
        return new UnpairedPreferenceExample(prompt, TrainingExampleMapper.Answer(row, "completion"), label)
        {
            PlainText = plain,
            Tools = TrainingExampleMapper.RowTools(row),
            TemplateArguments = TrainingExampleMapper.RowTemplateArguments(row),
        };
    }
}
