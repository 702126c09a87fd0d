using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Data;

/// <summary>
/// Maps a <see cref="DataRow"/> to the typed <see cref="TrainingExample"/> of a format, checking every field it needs;
/// a missing or mistyped field is a <see cref="DataFormatException"/> naming file, line and field.
/// </summary>
public static class TrainingExampleMapper
{
    /// <summary>Maps <paramref name="row"/> as <paramref name="format"/>.</summary>
    public static TrainingExample Map(DataRow row, DatasetFormat format) => format switch
    {
        DatasetFormat.Completion when row.Fields["prompt"] is JsonArray => ConversationalCompletion(row),
        DatasetFormat.Completion => new CompletionExample(Text(row, "prompt"), Text(row, "completion")),
        DatasetFormat.Chat when ShareGptConversation.IsShareGpt(row.Fields) => ShareGptConversation.Chat(row),
        DatasetFormat.Chat => Chat(row),
        DatasetFormat.Instruction => new InstructionExample(Text(row, "instruction"), OptionalText(row, "input"), Text(row, "output")),
        DatasetFormat.Text => new TextExample(Text(row, "text")),
        DatasetFormat.Classification when row.Fields["label"] is JsonArray => MultiLabel(row),
        DatasetFormat.Classification => new ClassificationExample(Text(row, "text"), Label(row)),
        DatasetFormat.Preference => Preference(row),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, null),
    };

    /// <summary>Maps with the format the row's own fields suggest.</summary>
    public static TrainingExample Map(DataRow row) =>
        Map(row, DatasetFormatDetector.Detect(row.Fields) ?? throw new DataFormatException(row.SourceFile, row.LineNumber,
            null, "unknown_format", $"no training format recognised from fields [{string.Join(", ", row.Fields.Select(f => f.Key))}]"));

    private static PreferenceExample Preference(DataRow row) => ShareGptConversation.IsShareGpt(row.Fields)
        ? ShareGptConversation.Preference(row)
        : PreferenceWithoutTools(row) with { Tools = PreferenceTools(row), TemplateArguments = RowTemplateArguments(row) };

    /// <summary>
    /// A preference row's tools: TRL's rows carry them beside the prompt (<c>tools</c>), OpenAI's preference lines inside
    /// <c>input</c> (<c>{"input": {"messages", "tools", "parallel_tool_calls"}}</c>, as its chat lines carry them beside
    /// <c>messages</c>). A row giving both is refused rather than one list silently dropped.
    /// </summary>
    private static IReadOnlyList<ChatTool>? PreferenceTools(DataRow row)
    {
        var outside = RowTools(row);
        if (row.Fields["input"] is not JsonObject input) return outside;
        IReadOnlyList<ChatTool>? inside;
        try { inside = ChatJson.ReadTools(input["tools"], "input.tools", input["functions"], "input.functions"); }
        catch (ChatFormatException e) { throw Error(row, e.Field, e.Reason, e.Detail); }
        if (inside is not null && outside is not null)
            throw Error(row, "input.tools", "invalid_value", "tools are given both in 'input' and beside it; give them once (OpenAI's preference lines put them in 'input')");
        return inside ?? outside;
    }

    /// <summary>
    /// The row's <c>chat_template_kwargs</c> (an object, or JSON text of one in a CSV/Parquet cell), which TRL's SFT, DPO
    /// and KTO trainers pass to <c>apply_chat_template</c> for that row; null when absent.
    /// </summary>
    internal static IReadOnlyDictionary<string, object?>? RowTemplateArguments(DataRow row)
    {
        const string field = ChatTemplateArguments.FieldName;
        var node = row.Fields[field];
        try
        {
            return node is JsonValue text && text.GetValueKind() == JsonValueKind.String
                ? ChatTemplateArguments.Parse(text.GetValue<string>(), field)
                : ChatTemplateArguments.FromJson(node, field);
        }
        catch (ChatFormatException e) { throw Error(row, e.Field, e.Reason, e.Detail); }
    }

    /// <summary>The row's <c>tools</c> (or OpenAI's legacy <c>functions</c>), or null; a malformed list names its field.</summary>
    internal static IReadOnlyList<ChatTool>? RowTools(DataRow row)
    {
        try
        {
            return ChatJson.ReadTools(JsonCell(row, row.Fields["tools"], "tools"), "tools",
                JsonCell(row, row.Fields["functions"], "functions"), "functions");
        }
        catch (ChatFormatException e) { throw Error(row, e.Field, e.Reason, e.Detail); }
    }

    private static PreferenceExample PreferenceWithoutTools(DataRow row)
    {
        if (row.Fields.ContainsKey("chosen") && !row.Fields.ContainsKey("preferred_output"))
        {
            if (!row.Fields.ContainsKey("prompt")) return ImplicitPromptPreference(row);
            var plainPrompt = row.Fields["prompt"] is not JsonArray;
            var prompt = row.Fields["prompt"] is JsonArray promptTurns
                ? Messages(row, promptTurns, "prompt")
                : [new ChatTurn("user", Text(row, "prompt"))];
            return new PreferenceExample(prompt, Answer(row, "chosen"), Answer(row, "rejected")) { PlainText = plainPrompt };
        }
        var input = row.Fields["input"] as JsonObject
            ?? throw Error(row, "input", "wrong_type", $"expected an object {{\"messages\": [...]}}, found {Kind(row.Fields["input"])}");
        var preferred = row.Fields.ContainsKey("preferred_output") ? "preferred_output" : "preferred_completion";
        var nonPreferred = row.Fields.ContainsKey("non_preferred_output") ? "non_preferred_output" : "non_preferred_completion";
        return new PreferenceExample(Messages(row, input["messages"], "input.messages"), Answer(row, preferred), Answer(row, nonPreferred));
    }

    /// <summary>
    /// A pair without a <c>prompt</c>: the prompt is what chosen and rejected share at their start, as TRL's
    /// <c>extract_prompt</c> (trl/data_utils.py, huggingface/trl@f2cd577) finds it: the common leading messages of two
    /// conversations, or the common leading characters of two strings, less a space just before the point where they
    /// differ (it stays with the answers). When one is a prefix of the other, TRL's loop leaves the last shared element
    /// with the answers, and so does this. A pair sharing nothing is refused (TRL would go on with an empty prompt or fail).
    /// </summary>
    private static PreferenceExample ImplicitPromptPreference(DataRow row)
    {
        var chosen = TextOrJsonCell(row.Fields["chosen"]);
        var rejected = TextOrJsonCell(row.Fields["rejected"]);
        if (chosen is JsonValue c && c.GetValueKind() == JsonValueKind.String
            && rejected is JsonValue r && r.GetValueKind() == JsonValueKind.String)
        {
            string chosenText = c.GetValue<string>(), rejectedText = r.GetValue<string>();
            var shared = Math.Min(chosenText.Length, rejectedText.Length);
            if (shared == 0) throw NoSharedPrompt(row);
            var index = 0;
            while (index < shared - 1 && chosenText[index] == rejectedText[index]) index++;
            var differs = chosenText[index] != rejectedText[index];
            if (index > 0 && char.IsLowSurrogate(chosenText[index])) index--;   // TRL indexes code points, not UTF-16 units
            if (differs && index > 0 && chosenText[index - 1] == ' ') index--;
            if (index <= 0) throw NoSharedPrompt(row);
            return PreferenceExample.FromText(chosenText[..index], chosenText[index..], rejectedText[index..]);
        }
        if (chosen is not JsonArray chosenTurns || rejected is not JsonArray rejectedTurns)
            throw Error(row, "prompt", "missing_field",
                "expected a prompt, or chosen and rejected both strings or both conversations that share their first part");
        var chosenMessages = Messages(row, chosenTurns, "chosen");
        var rejectedMessages = Messages(row, rejectedTurns, "rejected");
        var sharedTurns = Math.Min(chosenTurns.Count, rejectedTurns.Count);
        var turn = 0;
        while (turn < sharedTurns - 1 && JsonNode.DeepEquals(chosenTurns[turn], rejectedTurns[turn])) turn++;
        if (turn == 0) throw NoSharedPrompt(row);
        return new PreferenceExample([.. chosenMessages.Take(turn)], [.. chosenMessages.Skip(turn)], [.. rejectedMessages.Skip(turn)]);
    }

    /// <summary>A string is an answer's text unless it holds a JSON array (a CSV cell carrying a conversation).</summary>
    private static JsonNode? TextOrJsonCell(JsonNode? node)
    {
        if (node is not JsonValue text || text.GetValueKind() != JsonValueKind.String) return node;
        var value = text.GetValue<string>();
        if (!value.TrimStart().StartsWith('[')) return node;
        try { return JsonNode.Parse(value) as JsonArray ?? node; }
        catch (JsonException) { return node; }
    }

    private static DataFormatException NoSharedPrompt(DataRow row) =>
        Error(row, "prompt", "missing_field",
            "no prompt, and chosen and rejected share no beginning to take as the prompt (TRL's implicit prompt)");

    internal static IReadOnlyList<ChatTurn> Answer(DataRow row, string field) => row.Fields[field] switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => [new ChatTurn("assistant", v.GetValue<string>())],
        var node => Messages(row, node, field),
    };

    /// <summary>A conversation with its optional per-example <c>tools</c> (or OpenAI's legacy <c>functions</c>).</summary>
    private static ChatExample Chat(DataRow row) => WithTools(row, Messages(row, row.Fields["messages"], "messages"));

    /// <summary>
    /// TRL's conversational prompt-completion row, <c>{"prompt": [messages], "completion": [messages]}</c>: one conversation,
    /// prompt then completion, where only the completion's assistant turns are trained on (an assistant turn inside the
    /// prompt is context, as TRL masks everything up to the prompt's generation prompt).
    /// </summary>
    private static ChatExample ConversationalCompletion(DataRow row)
    {
        if (row.Fields["completion"] is not JsonArray)
            throw Error(row, "completion", "wrong_type",
                $"expected a list of messages like the prompt's, found {Kind(row.Fields["completion"])}");
        var prompt = Messages(row, row.Fields["prompt"], "prompt").Select(t => t with { Weight = t.Role == "assistant" ? 0 : t.Weight });
        return WithTools(row, [.. prompt, .. Messages(row, row.Fields["completion"], "completion")]);
    }

    private static ChatExample WithTools(DataRow row, IReadOnlyList<ChatTurn> messages) =>
        new(messages) { Tools = RowTools(row), TemplateArguments = RowTemplateArguments(row) };

    internal static IReadOnlyList<ChatTurn> Messages(DataRow row, JsonNode? node, string field)
    {
        IReadOnlyList<ChatMessage> messages;
        try { messages = ChatJson.ReadMessages(JsonCell(row, node, field), field); }
        catch (ChatFormatException e) { throw Error(row, e.Field, e.Reason, e.Detail); }
        var array = (JsonArray)JsonCell(row, node, field)!;
        var turns = new List<ChatTurn>(messages.Count);
        for (int i = 0; i < messages.Count; i++)
            turns.Add(new ChatTurn(messages[i], Weight(row, array[i]!["weight"], $"{field}[{i}].weight")));
        return turns;
    }

    /// <summary>A message's OpenAI <c>weight</c>: 0 or 1 (also written 0.0/1.0), null when absent or null.</summary>
    internal static int? Weight(DataRow row, JsonNode? weight, string field)
    {
        if (weight is null) return null;
        if (weight is not JsonValue value || !value.TryGetValue<int>(out var result) && !TryIntegralDouble(value, out result)
            || result is not (0 or 1))
            throw Error(row, field, "wrong_type", $"expected 0 or 1, found {weight.ToJsonString()}");
        return result;
    }

    /// <summary>CSV cells hold JSON as text; a string that parses as JSON stands for the value it holds.</summary>
    internal static JsonNode? JsonCell(DataRow row, JsonNode? node, string field)
    {
        if (node is not JsonValue text || text.GetValueKind() != JsonValueKind.String) return node;
        try { return JsonNode.Parse(text.GetValue<string>()); }
        catch (JsonException) { throw Error(row, field, "wrong_type", "expected JSON (an array), found a string that is not JSON"); }
    }

    private static bool TryIntegralDouble(JsonValue value, out int result)
    {
        result = 0;
        if (!value.TryGetValue<double>(out var d) || d != Math.Floor(d)) return false;
        result = (int)d;
        return true;
    }

    private static string Text(DataRow row, string field) => row.Fields[field] switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        null when !row.Fields.ContainsKey(field) => throw Error(row, field, "missing_field", "expected a string, found no such field"),
        var other => throw Error(row, field, "wrong_type", $"expected a string, found {Kind(other)}"),
    };

    private static string OptionalText(DataRow row, string field) =>
        row.Fields[field] is null ? "" : Text(row, field);

    private static string Label(DataRow row) => row.Fields["label"] switch
    {
        JsonValue v when v.GetValueKind() is JsonValueKind.String => v.GetValue<string>(),
        JsonValue v when v.GetValueKind() is JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => v.ToJsonString(),
        var other => throw Error(row, "label", other is null ? "missing_field" : "wrong_type",
            $"expected a string or number label, found {Kind(other)}"),
    };

    /// <summary>A multi-label row: <c>{"text", "label": ["a", "b"]}</c>, each label a string or a number (its JSON text).</summary>
    private static ClassificationExample MultiLabel(DataRow row)
    {
        var labels = ((JsonArray)row.Fields["label"]!).Select((node, i) => node switch
        {
            JsonValue v when v.GetValueKind() is JsonValueKind.String => v.GetValue<string>(),
            JsonValue v when v.GetValueKind() is JsonValueKind.Number => v.ToJsonString(),
            var other => throw Error(row, $"label[{i}]", "wrong_type", $"expected a string or number label, found {Kind(other)}"),
        }).ToList();
        if (labels.Distinct().Count() != labels.Count)
            throw Error(row, "label", "invalid_value", $"a label is listed twice ({string.Join(", ", labels)})");
        return new ClassificationExample(Text(row, "text"), string.Join(",", labels)) { ClassLabels = labels };
    }

    internal static string Kind(JsonNode? node) => node is null ? "null" : node.GetValueKind().ToString().ToLowerInvariant();

    internal static DataFormatException Error(DataRow row, string field, string reason, string detail) =>
        new(row.SourceFile, row.LineNumber, field, reason, detail);
}
