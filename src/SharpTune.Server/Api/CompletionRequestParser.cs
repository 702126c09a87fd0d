using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api;

/// <summary>Reads an OpenAI completion request body; every problem is a 400 naming the field.</summary>
public static class CompletionRequestParser
{
    private const int MaxStops = 16;
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool"];

    /// <summary>Parses a <c>/v1/chat/completions</c> (<paramref name="chat"/>) or <c>/v1/completions</c> body.</summary>
    /// <exception cref="ApiException">400 with the field in <c>param</c>.</exception>
    public static CompletionRequest Parse(JsonNode? body, bool chat, int maxN)
    {
        if (body is not JsonObject json) throw new ApiException(400, "the request body must be a JSON object");
        var model = RequiredString(json, "model");
        var maxTokens = OptionalInt(json, "max_completion_tokens", 1) ?? OptionalInt(json, "max_tokens", 1);
        var n = OptionalInt(json, "n", 1) ?? 1;
        if (n > maxN) throw ApiException.BadField("n", $"'n' is {n}; this server generates at most {maxN} completions per request");
        var streamOptions = json["stream_options"];
        if (streamOptions is not null and not JsonObject) throw ApiException.BadField("stream_options", "'stream_options' must be an object");
        return new CompletionRequest
        {
            Model = model,
            Messages = chat ? Messages(json) : null,
            Prompts = chat ? null : Prompts(json),
            MaxTokens = maxTokens,
            Temperature = OptionalDouble(json, "temperature", 0, 2) ?? 1.0,
            TopP = OptionalDouble(json, "top_p", 0, 1) is { } p ? (p == 0 ? throw ApiException.BadField("top_p", "'top_p' must be greater than 0") : p) : 1.0,
            N = n,
            Stop = Stops(json),
            Seed = json["seed"] is null ? null : Number(json, "seed", v => v.TryGetValue<long>(out var s) ? s : (long?)null, "an integer"),
            Stream = OptionalBool(json, "stream") ?? false,
            IncludeUsage = streamOptions is JsonObject so && OptionalBool(so, "include_usage", "stream_options.include_usage") == true,
        };
    }

    private static IReadOnlyList<ChatMessage> Messages(JsonObject json)
    {
        if (json["messages"] is not JsonArray { Count: > 0 } array)
            throw ApiException.BadField("messages", json["messages"] is null
                ? "required field 'messages' is missing" : "'messages' must be a non-empty array of {role, content} objects");
        var messages = new List<ChatMessage>();
        for (var i = 0; i < array.Count; i++)
        {
            var field = $"messages[{i}]";
            if (array[i] is not JsonObject message) throw ApiException.BadField(field, $"'{field}' must be an object with 'role' and 'content'");
            var role = RequiredString(message, "role", $"{field}.role");
            if (!Roles.Contains(role))
                throw ApiException.BadField($"{field}.role", $"'{field}.role' is '{role}'; expected one of {string.Join(", ", Roles)}");
            messages.Add(new ChatMessage(role, Content(message["content"], $"{field}.content", role)));
        }
        return messages;
    }

    /// <summary>A string, or an array of content parts of which only text parts are supported.</summary>
    private static string Content(JsonNode? content, string field, string role)
    {
        switch (content)
        {
            case JsonValue v when v.TryGetValue<string>(out var text): return text;
            case null when role == "assistant": return "";
            case JsonArray parts:
                var joined = new System.Text.StringBuilder();
                for (var i = 0; i < parts.Count; i++)
                {
                    if (parts[i] is not JsonObject part || part["type"]?.GetValueKind() != JsonValueKind.String)
                        throw ApiException.BadField($"{field}[{i}]", $"'{field}[{i}]' must be a content part with a 'type'");
                    var type = part["type"]!.GetValue<string>();
                    if (type != "text")
                        throw ApiException.BadField($"{field}[{i}].type", $"content parts of type '{type}' are not supported; only 'text'");
                    joined.Append(RequiredString(part, "text", $"{field}[{i}].text"));
                }
                return joined.ToString();
            default:
                throw ApiException.BadField(field, content is null ? $"required field '{field}' is missing" : $"'{field}' must be a string or an array of text parts");
        }
    }

    private static IReadOnlyList<string> Prompts(JsonObject json)
    {
        switch (json["prompt"])
        {
            case null: throw ApiException.BadField("prompt", "required field 'prompt' is missing");
            case JsonValue v when v.TryGetValue<string>(out var prompt): return [prompt];
            case JsonArray { Count: > 0 } array:
                return array.Select((item, i) => item is JsonValue s && s.TryGetValue<string>(out var text) ? text
                    : throw ApiException.BadField($"prompt[{i}]", $"'prompt[{i}]' must be a string")).ToArray();
            default: throw ApiException.BadField("prompt", "'prompt' must be a string or a non-empty array of strings");
        }
    }

    private static IReadOnlyList<string> Stops(JsonObject json)
    {
        var stops = json["stop"] switch
        {
            null => [],
            JsonValue v when v.TryGetValue<string>(out var one) => [one],
            JsonArray array => array.Select((item, i) => item is JsonValue s && s.TryGetValue<string>(out var text) ? text
                : throw ApiException.BadField($"stop[{i}]", $"'stop[{i}]' must be a string")).ToList(),
            _ => throw ApiException.BadField("stop", "'stop' must be a string or an array of strings"),
        };
        if (stops.Count > MaxStops) throw ApiException.BadField("stop", $"'stop' has {stops.Count} strings; at most {MaxStops} are allowed");
        return stops.Where(s => s.Length > 0).ToArray();
    }

    private static string RequiredString(JsonObject json, string name, string? field = null)
    {
        field ??= name;
        return json[name] switch
        {
            null => throw ApiException.BadField(field, $"required field '{field}' is missing"),
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            _ => throw ApiException.BadField(field, $"'{field}' must be a string"),
        };
    }

    private static int? OptionalInt(JsonObject json, string name, int min)
    {
        if (json[name] is null) return null;
        var value = Number(json, name, v => v.TryGetValue<int>(out var i) ? i : (int?)null, "an integer");
        return value >= min ? value : throw ApiException.BadField(name, $"'{name}' is {value}; it must be at least {min}");
    }

    private static double? OptionalDouble(JsonObject json, string name, double min, double max)
    {
        if (json[name] is null) return null;
        var value = Number(json, name, v => v.TryGetValue<double>(out var d) ? d : (double?)null, "a number");
        return value >= min && value <= max ? value
            : throw ApiException.BadField(name, $"'{name}' is {value}; it must be between {min} and {max}");
    }

    private static bool? OptionalBool(JsonObject json, string name, string? field = null) => json[name] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
        _ => throw ApiException.BadField(field ?? name, $"'{field ?? name}' must be true or false"),
    };

    private static T Number<T>(JsonObject json, string name, Func<JsonValue, T?> read, string what) where T : struct =>
        json[name] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && read(v) is { } value ? value
            : throw ApiException.BadField(name, $"'{name}' must be {what}");
}
