using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Server.Api;

/// <summary>
/// A <c>POST /v1/embeddings</c> body as OpenAI defines it: <c>input</c> a string, an array of strings, an array of token
/// ids or an array of token-id arrays; <c>model</c>; <c>encoding_format</c> float (default) or base64; <c>dimensions</c>.
/// <c>prompt_name</c> (a prompt of the model's config_sentence_transformers.json) is this server's extension.
/// </summary>
internal sealed record EmbeddingRequest(string Model, IReadOnlyList<string>? Texts, IReadOnlyList<IReadOnlyList<int>>? TokenIds, bool Base64,
    int? Dimensions, string? PromptName)
{
    /// <summary>OpenAI's limit on inputs in one request.</summary>
    public const int MaxInputs = 2048;

    public int Count => Texts?.Count ?? TokenIds!.Count;

    public static EmbeddingRequest Parse(JsonNode? body)
    {
        var json = body as JsonObject ?? throw new ApiException(400, "the request body must be a JSON object");
        var model = CompletionRequestParser.RequiredString(json, "model");
        var (texts, ids) = ParseInput(json["input"]);
        var format = json["encoding_format"] is null ? "float" : CompletionRequestParser.RequiredString(json, "encoding_format");
        if (format is not ("float" or "base64"))
            throw ApiException.BadField("encoding_format", $"'encoding_format' is '{format}'; it must be 'float' or 'base64'");
        var dimensions = CompletionRequestParser.OptionalInt(json, "dimensions", min: 1);
        var promptName = json["prompt_name"] is null ? null : CompletionRequestParser.RequiredString(json, "prompt_name");
        if (json["user"] is not null) CompletionRequestParser.RequiredString(json, "user");
        return new EmbeddingRequest(model, texts, ids, format == "base64", dimensions, promptName);
    }

    private static (IReadOnlyList<string>? Texts, IReadOnlyList<IReadOnlyList<int>>? Ids) ParseInput(JsonNode? input)
    {
        switch (input)
        {
            case null:
                throw ApiException.BadField("input", "required field 'input' is missing");
            case JsonValue v when v.TryGetValue<string>(out var text):
                return ([NonEmpty(text, "input")], null);
            case JsonArray { Count: 0 }:
                throw ApiException.BadField("input", "'input' is an empty array; give at least one string or token id");
            case JsonArray array when IsInteger(array[0]):
                return (null, [ReadTokenIds(array, "input")]);
            case JsonArray array when array.Count > MaxInputs:   // strings or token-id arrays: one input each
                throw ApiException.BadField("input", $"'input' has {array.Count} items; at most {MaxInputs} are allowed");
            case JsonArray array when array[0] is JsonArray:
                return (null, array.Select((item, i) => item is JsonArray inner ? ReadTokenIds(inner, $"input[{i}]")
                    : throw ApiException.BadField($"input[{i}]", $"'input[{i}]' must be an array of token ids like the other items")).ToArray());
            case JsonArray array:
                return (array.Select((item, i) => item is JsonValue s && s.TryGetValue<string>(out var one) ? NonEmpty(one, $"input[{i}]")
                    : throw ApiException.BadField($"input[{i}]", $"'input[{i}]' must be a string like the other items")).ToArray(), null);
            default:
                throw ApiException.BadField("input", "'input' must be a string, an array of strings, an array of token ids or an array of token-id arrays");
        }
    }

    private static string NonEmpty(string text, string field) =>
        text.Length > 0 ? text : throw ApiException.BadField(field, $"'{field}' is an empty string; there is nothing to embed");

    private static bool IsInteger(JsonNode? node) => node is JsonValue v && v.GetValueKind() == JsonValueKind.Number;

    private static int[] ReadTokenIds(JsonArray array, string field)
    {
        if (array.Count == 0) throw ApiException.BadField(field, $"'{field}' is an empty array of token ids; there is nothing to embed");
        return array.Select((item, i) => item is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<int>(out var id) && id >= 0 ? id
            : throw ApiException.BadField(field, $"'{field}[{i}]' must be a non-negative integer token id")).ToArray();
    }
}
