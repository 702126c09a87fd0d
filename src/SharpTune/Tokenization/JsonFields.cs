using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>Typed reads from tokenizer JSON that fail with the file and JSON path named.</summary>
internal sealed class JsonFields(string file)
{
    public string File { get; } = file;

    public TokenizerFormatException Error(JsonNode? at, string message) =>
        new(File, at is null ? message : $"{message} (at {at.GetPath()})");

    /// <summary>An error at a JSON path written out (for values read from document elements rather than nodes).</summary>
    public TokenizerFormatException Error(string path, string message) => new(File, $"{message} (at {path})");

    public JsonObject Object(JsonNode? node, string what) =>
        node as JsonObject ?? throw Error(node, $"expected {what} to be a JSON object");

    public string? OptionalString(JsonObject obj, string name) => obj[name] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        var other => throw Error(other, $"field '{name}' must be a string"),
    };

    public string String(JsonObject obj, string name) =>
        OptionalString(obj, name) ?? throw Error(obj, $"missing string field '{name}'");

    public bool Bool(JsonObject obj, string name, bool fallback) => obj[name] switch
    {
        null => fallback,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        var other => throw Error(other, $"field '{name}' must be true or false"),
    };

    public int Int(JsonObject obj, string name, int fallback) => obj[name] switch
    {
        null => fallback,
        JsonValue v when v.TryGetValue<int>(out var i) => i,
        var other => throw Error(other, $"field '{name}' must be an integer"),
    };

    public string TypeOf(JsonObject obj) => String(obj, "type");

    /// <summary>Hugging Face writes patterns as {"String": "x"} or {"Regex": "x"}.</summary>
    public (string Text, bool IsRegex) Pattern(JsonObject obj)
    {
        var pattern = Object(obj["pattern"], "'pattern'");
        if (OptionalString(pattern, "String") is { } s) return (s, false);
        if (OptionalString(pattern, "Regex") is { } r) return (r, true);
        throw Error(pattern, "pattern must hold a 'String' or a 'Regex'");
    }
}
