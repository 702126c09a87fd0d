using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data;

/// <summary>Edits the text inside a row's fields while keeping its shape, for redaction and augmentation.</summary>
public static class RowTextRewriter
{
    private static readonly HashSet<string> NonTextKeys = new(StringComparer.Ordinal) { "role", "from", "label", "weight", "name", "id" };

    /// <summary>
    /// Rewrites every string value in <paramref name="fields"/> (nested ones included) except structural ones
    /// (role, ShareGPT's from, label, weight, name, id). Returns a new object; the input is untouched.
    /// </summary>
    public static JsonObject RewriteAllText(JsonObject fields, Func<string, string> rewrite) =>
        (JsonObject)Rewrite(fields.DeepClone(), rewrite, null)!;

    /// <summary>
    /// Rewrites only the input side of a training row — what augmentation may vary without changing the target:
    /// text (plain and classification), prompt (completion, preference), instruction and input (instruction),
    /// user turns (chat, and the prompt of a preference pair; ShareGPT's human turns too). Returns a new object.
    /// </summary>
    public static JsonObject RewriteInputs(JsonObject fields, DatasetFormat format, Func<string, string> rewrite)
    {
        var copy = (JsonObject)fields.DeepClone();
        switch (format)
        {
            case DatasetFormat.Text or DatasetFormat.Classification:
                RewriteField(copy, "text", rewrite);
                break;
            case DatasetFormat.Completion:
                if (copy["prompt"] is JsonArray promptMessages) RewriteUserTurns(promptMessages, rewrite);
                else RewriteField(copy, "prompt", rewrite);
                break;
            case DatasetFormat.Instruction:
                RewriteField(copy, "instruction", rewrite);
                RewriteField(copy, "input", rewrite);
                break;
            case DatasetFormat.Chat:
                RewriteUserTurns(copy["messages"] as JsonArray, rewrite);
                RewriteUserTurns(copy[ShareGptConversation.Field] as JsonArray, rewrite);
                break;
            case DatasetFormat.Preference:
                if (copy["prompt"] is JsonArray promptTurns) RewriteUserTurns(promptTurns, rewrite);
                else RewriteField(copy, "prompt", rewrite);
                RewriteUserTurns((copy["input"] as JsonObject)?["messages"] as JsonArray, rewrite);
                RewriteUserTurns(copy[ShareGptConversation.Field] as JsonArray, rewrite);
                break;
        }
        return copy;
    }

    private static void RewriteField(JsonObject obj, string key, Func<string, string> rewrite)
    {
        if (obj[key] is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Length > 0)
            obj[key] = rewrite(v.GetValue<string>());
    }

    private static void RewriteUserTurns(JsonArray? messages, Func<string, string> rewrite)
    {
        if (messages is null) return;
        foreach (var message in messages.OfType<JsonObject>())
            if (message["role"] is JsonValue role && role.GetValueKind() == JsonValueKind.String && role.GetValue<string>() == "user")
                RewriteField(message, "content", rewrite);
            else if (message["from"] is JsonValue from && from.GetValueKind() == JsonValueKind.String && from.GetValue<string>() is "human" or "user")
                RewriteField(message, "value", rewrite);
    }

    private static JsonNode? Rewrite(JsonNode? node, Func<string, string> rewrite, string? key)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var name in obj.Select(p => p.Key).ToList())
                    if (obj[name] is JsonValue child) obj[name] = Rewrite(child, rewrite, name);
                    else Rewrite(obj[name], rewrite, name);
                return obj;
            case JsonArray array:
                for (int i = 0; i < array.Count; i++)
                    if (array[i] is JsonValue child) array[i] = Rewrite(child, rewrite, key);
                    else Rewrite(array[i], rewrite, key);
                return array;
            case JsonValue value when value.GetValueKind() == JsonValueKind.String && (key is null || !NonTextKeys.Contains(key)):
                return JsonValue.Create(rewrite(value.GetValue<string>()));
            default:
                return node?.DeepClone();
        }
    }
}
