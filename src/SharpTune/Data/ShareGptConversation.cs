using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Data;

/// <summary>
/// Reads ShareGPT rows, the layout LLaMA-Factory and Axolotl users bring:
/// <c>{"conversations": [{"from", "value", "weight"?}], "system"?, "tools"?}</c>, and the preference form with
/// <c>chosen</c>/<c>rejected</c> message objects answering the conversation's last turn. Follows LLaMA-Factory's
/// <c>SharegptDatasetConverter</c> (src/llamafactory/data/converter.py): a leading <c>system</c> turn, then turns
/// alternating human/observation and gpt/function_call, ending on an answer (or, for a preference row, on the turn the
/// answers reply to). A <c>function_call</c> value (JSON of <c>{"name","arguments"}</c> or a list of them) becomes an
/// assistant message with tool calls, ids <c>call_N</c> as OpenAI's legacy <c>function_call</c> gets them; an
/// <c>observation</c> becomes the tool message answering that call. Where LLaMA-Factory logs and skips a broken
/// conversation, this throws a <see cref="DataFormatException"/> naming the field.
/// </summary>
internal static class ShareGptConversation
{
    /// <summary>The field holding the turns (LLaMA-Factory's <c>messages</c> column default, Axolotl's <c>field_messages</c> for ShareGPT).</summary>
    public const string Field = "conversations";

    private const string SystemTag = "system";
    private const string FunctionTag = "function_call";
    private const string ObservationTag = "observation";

    /// <summary>
    /// LLaMA-Factory's default tags (parser.py, DatasetAttr) and the role each becomes, plus Axolotl's default role aliases
    /// <c>user</c> and <c>assistant</c> (chat_template.py, ChatTemplatePrompter's roles map).
    /// </summary>
    private static readonly Dictionary<string, string> Roles = new(StringComparer.Ordinal)
    {
        ["human"] = "user", ["gpt"] = "assistant", [SystemTag] = "system", [FunctionTag] = "assistant", [ObservationTag] = "tool",
        ["user"] = "user", ["assistant"] = "assistant",
    };

    private static readonly HashSet<string> PromptTags = ["human", "user", ObservationTag];
    private static readonly HashSet<string> AnswerTags = ["gpt", "assistant", FunctionTag];

    private const string KnownTags = "human, gpt, system, function_call, observation (or Axolotl's user, assistant)";

    /// <summary>What the last turn must be: an answer (supervised rows), what the answers reply to (preference rows), or either (prompts).</summary>
    public enum Ending { Answer, Prompt, Either }

    /// <summary>Whether a row is ShareGPT rather than OpenAI chat: it has <c>conversations</c> and no <c>messages</c>.</summary>
    public static bool IsShareGpt(JsonObject fields) => fields.ContainsKey(Field) && !fields.ContainsKey("messages");

    /// <summary>A supervised conversation: every gpt and function_call turn is trained on unless its <c>weight</c> is 0.</summary>
    public static ChatExample Chat(DataRow row) =>
        new(Turns(row, Ending.Answer, out _))
        {
            Tools = Tools(row), TemplateArguments = TrainingExampleMapper.RowTemplateArguments(row),
        };

    /// <summary>
    /// The preference form (LLaMA-Factory's <c>ranking: true</c>): the conversation is the prompt and ends on a human or
    /// observation turn; <c>chosen</c> and <c>rejected</c> are each one gpt or function_call message object.
    /// </summary>
    public static PreferenceExample Preference(DataRow row)
    {
        var prompt = Turns(row, Ending.Prompt, out var calls);
        return new PreferenceExample(prompt, [Answer(row, "chosen", calls)], [Answer(row, "rejected", calls)])
        {
            Tools = Tools(row), TemplateArguments = TrainingExampleMapper.RowTemplateArguments(row),
        };
    }

    /// <summary>
    /// The row's <c>tools</c> (a list, or JSON text of one), each in OpenAI's wrapped shape <c>{"type": "function",
    /// "function": {…}}</c>: LLaMA-Factory's ShareGPT data lists bare function definitions, and its templates wrap them
    /// before rendering (tool_utils.py, QwenToolUtils.tool_formatter), so the prompt is the one the same tools give in an
    /// OpenAI row. An empty string is no tools, as LLaMA-Factory reads an empty tools cell (template.py: "if tools").
    /// </summary>
    private static IReadOnlyList<ChatTool>? Tools(DataRow row)
    {
        if (row.Fields["tools"] is JsonValue text && text.GetValueKind() == JsonValueKind.String && text.GetValue<string>().Trim().Length == 0)
            return null;
        return TrainingExampleMapper.RowTools(row)?.Select(tool => tool.Definition.ContainsKey("function") ? tool
            : tool with { Definition = new JsonObject { ["type"] = "function", ["function"] = tool.Definition.DeepClone() } }).ToArray();
    }

    /// <summary>
    /// The row's turns as chat turns: the system text first (a leading system turn, else the row's <c>system</c> column,
    /// as Axolotl's <c>field_system</c> reads it), then each turn. <paramref name="calls"/> is how many tool calls they make.
    /// </summary>
    public static IReadOnlyList<ChatTurn> Turns(DataRow row, Ending ending, out int calls)
    {
        var array = TrainingExampleMapper.JsonCell(row, row.Fields[Field], Field) switch
        {
            JsonArray a when a.Count > 0 => a,
            JsonArray => throw TrainingExampleMapper.Error(row, Field, "empty_field", "expected at least one turn, found an empty array"),
            var other => throw TrainingExampleMapper.Error(row, Field, other is null ? "missing_field" : "wrong_type",
                $"expected an array of turns {{\"from\", \"value\"}}, found {TrainingExampleMapper.Kind(other)}"),
        };
        var turns = new List<ChatTurn>(array.Count + 1);
        var first = 0;
        var system = OptionalString(row, row.Fields, SystemTag, SystemTag);
        if (Tag(row, array[0], $"{Field}[0]") == SystemTag)
        {
            var leading = Value(row, (JsonObject)array[0]!, $"{Field}[0]");
            if (!string.IsNullOrEmpty(system) && system != leading)
                throw TrainingExampleMapper.Error(row, SystemTag, "invalid_value",
                    "the conversation opens with a system turn and the row's 'system' column says something else; give the system text once");
            system = leading;
            first = 1;
        }
        // LLaMA-Factory's templates write no system turn for empty system text (template.py, _encode: "if system or tools").
        if (!string.IsNullOrEmpty(system)) turns.Add(new ChatTurn(new ChatMessage("system", system), null));

        calls = 0;
        string? lastTag = null;
        for (int i = first; i < array.Count; i++)
        {
            var path = $"{Field}[{i}]";
            var tag = Tag(row, array[i], path);
            var expected = (i - first) % 2 == 0 ? PromptTags : AnswerTags;
            if (!expected.Contains(tag))
                throw TrainingExampleMapper.Error(row, path + ".from", "invalid_value", tag == SystemTag
                    ? "a system turn may only open the conversation"
                    : $"turns alternate, human or observation then gpt or function_call (LLaMA-Factory's rule); turn {i - first + 1} " +
                      $"after the system text must be {(expected == PromptTags ? "human or observation" : "gpt or function_call")}, found \"{tag}\"");
            var message = (JsonObject)array[i]!;
            var weight = TrainingExampleMapper.Weight(row, message["weight"], path + ".weight");
            turns.Add(new ChatTurn(Message(row, message, tag, path, turns, ref calls), weight));
            lastTag = tag;
        }

        var count = array.Count - first;
        if (count == 0)
            throw TrainingExampleMapper.Error(row, Field, "empty_field", "expected turns after the system turn, found none");
        if (ending == Ending.Answer && count % 2 != 0)
            throw TrainingExampleMapper.Error(row, Field, "invalid_value",
                $"expected the conversation to end with a gpt or function_call turn to train on, found it ending with \"{lastTag}\"");
        if (ending == Ending.Prompt && count % 2 == 0)
            throw TrainingExampleMapper.Error(row, Field, "invalid_value",
                $"a preference row's conversation ends with the human or observation turn that chosen and rejected answer, found it ending with \"{lastTag}\"");
        return turns;
    }

    /// <summary>One turn as a chat message; <paramref name="earlier"/> holds the turns before it.</summary>
    private static ChatMessage Message(DataRow row, JsonObject message, string tag, string path, List<ChatTurn> earlier, ref int calls)
    {
        var value = Value(row, message, path);
        switch (tag)
        {
            case FunctionTag:
                return new ChatMessage("assistant", "") { ContentIsNull = true, ToolCalls = FunctionCalls(row, value, path + ".value", ref calls) };
            case ObservationTag:
                // The result answers the function_call turn just before it; LLaMA-Factory renders one observation per
                // function_call turn, so a turn of parallel calls gets one result, filed under its first call.
                var made = earlier.Count > 0 ? earlier[^1].Message.ToolCalls : [];
                if (made.Count == 0)
                    throw TrainingExampleMapper.Error(row, path + ".from", "invalid_value",
                        "an observation is the result of the function_call turn just before it, and there is none");
                return ChatMessage.ToolResult(made[0].Id!, value, made.Count == 1 ? made[0].Name : null);
            default:
                return new ChatMessage(Roles[tag], value);
        }
    }

    /// <summary>
    /// A function_call turn's value: JSON text of one call <c>{"name","arguments"}</c> or a list of them (parallel calls),
    /// as LLaMA-Factory's <c>FunctionFormatter</c> parses it (formatter.py). Each call is read by <see cref="ChatJson"/>'s
    /// legacy-call reader; arguments given as a string are JSON text of the object, as Axolotl and OpenAI read them.
    /// </summary>
    private static IReadOnlyList<ToolCall> FunctionCalls(DataRow row, string value, string path, ref int calls)
    {
        JsonNode? parsed;
        try { parsed = JsonNode.Parse(value); }
        catch (JsonException e)
        {
            throw TrainingExampleMapper.Error(row, path, "wrong_type",
                $"expected JSON of a call {{\"name\", \"arguments\"}} or a list of them, found text that is not JSON ({e.Message})");
        }
        var (items, single) = parsed is JsonArray list ? (list.ToArray(), false) : (new[] { parsed }, true);
        if (items.Length == 0) throw TrainingExampleMapper.Error(row, path, "empty_field", "expected at least one call, found an empty list");
        var result = new ToolCall[items.Length];
        for (int j = 0; j < items.Length; j++)
        {
            var at = single ? path : $"{path}[{j}]";
            if (items[j] is JsonObject call && !call.ContainsKey("arguments"))
                throw TrainingExampleMapper.Error(row, at + ".arguments", "missing_field", "expected the call's arguments (an object), found nothing");
            try { result[j] = ChatJson.ReadLegacyCall(items[j], at, calls++); }
            catch (ChatFormatException e) { throw TrainingExampleMapper.Error(row, e.Field, e.Reason, e.Detail); }
        }
        return result;
    }

    /// <summary>A preference answer: one gpt or function_call message object (JSON text of one in a CSV/Parquet cell).</summary>
    private static ChatTurn Answer(DataRow row, string field, int callsBefore)
    {
        var node = row.Fields[field];
        if (node is JsonValue text && text.GetValueKind() == JsonValueKind.String && text.GetValue<string>().TrimStart().StartsWith('{'))
            node = TrainingExampleMapper.JsonCell(row, node, field);
        if (node is not JsonObject message)
            throw TrainingExampleMapper.Error(row, field, node is null ? "missing_field" : "wrong_type",
                $"expected a message object {{\"from\": \"gpt\", \"value\": …}} answering the conversation, found {TrainingExampleMapper.Kind(node)}");
        var tag = Tag(row, message, field);
        if (!AnswerTags.Contains(tag))
            throw TrainingExampleMapper.Error(row, field + ".from", "invalid_value", $"expected gpt or function_call, found \"{tag}\"");
        var calls = callsBefore;   // both answers continue the prompt's call numbering
        return new ChatTurn(Message(row, message, tag, field, [], ref calls), TrainingExampleMapper.Weight(row, message["weight"], field + ".weight"));
    }

    private static string Tag(DataRow row, JsonNode? node, string path)
    {
        if (node is not JsonObject message)
            throw TrainingExampleMapper.Error(row, path, "wrong_type", $"expected a turn object {{\"from\", \"value\"}}, found {TrainingExampleMapper.Kind(node)}");
        var tag = OptionalString(row, message, "from", path + ".from")
            ?? throw TrainingExampleMapper.Error(row, path + ".from", "missing_field", $"expected one of {KnownTags}, found nothing");
        return Roles.ContainsKey(tag) ? tag
            : throw TrainingExampleMapper.Error(row, path + ".from", "invalid_value", $"expected one of {KnownTags}; found \"{tag}\"");
    }

    private static string Value(DataRow row, JsonObject message, string path) =>
        OptionalString(row, message, "value", path + ".value")
        ?? throw TrainingExampleMapper.Error(row, path + ".value", "missing_field", "expected the turn's text, found nothing");

    private static string? OptionalString(DataRow row, JsonObject obj, string key, string path) => obj[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        var other => throw TrainingExampleMapper.Error(row, path, "wrong_type", $"expected a string, found {TrainingExampleMapper.Kind(other)}"),
    };
}
