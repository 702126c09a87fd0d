using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data.Readers;

/// <summary>
/// Streams a <c>.json</c> file holding one top-level array of objects (the other layout Hugging Face's JSON loader
/// accepts) without loading it whole. A row's number is its 1-based index in the array, since elements may span lines.
/// </summary>
public static class JsonArrayRowReader
{
    /// <summary>Whether the file's first non-whitespace character is '[' (an array, not JSON Lines).</summary>
    public static bool LooksLikeArray(string path)
    {
        using var reader = new StreamReader(path, detectEncodingFromByteOrderMarks: true);
        int c;
        while ((c = reader.Read()) >= 0 && char.IsWhiteSpace((char)c)) { }
        return c == '[';
    }

    public static IEnumerable<RowReadResult> Read(string path)
    {
        using var stream = File.OpenRead(path);
        var elements = JsonSerializer.DeserializeAsyncEnumerable<JsonElement>(stream).ToBlockingEnumerable();
        using var enumerator = elements.GetEnumerator();
        long index = 0;
        while (true)
        {
            JsonElement element = default;
            JsonException? syntaxError = null;
            bool more;
            try
            {
                more = enumerator.MoveNext();
                if (more) element = enumerator.Current;
            }
            catch (JsonException e)
            {
                more = false;
                syntaxError = e;
            }
            if (syntaxError is not null)
            {
                // The array cannot be resynchronised after a syntax error, so the rest of the file is one reject.
                yield return RowReadResult.Bad(new DataFormatException(path, index + 1, null, "malformed_json",
                    $"malformed JSON in element {index + 1} ({syntaxError.Message}); the rest of the file is unreadable", syntaxError), null);
            }
            if (!more) yield break;
            index++;
            if (element.ValueKind != JsonValueKind.Object)
            {
                yield return RowReadResult.Bad(new DataFormatException(path, index, null, "not_an_object",
                    $"expected array elements to be objects, found {element.ValueKind.ToString().ToLowerInvariant()}"),
                    element.ValueKind == JsonValueKind.Null ? null : JsonSerializer.Serialize(element));
                continue;
            }
            // A repeated key would make the JsonObject throw on first use: a row error naming it instead.
            yield return RepeatedKeys.In(element) is { } repeated
                ? RowReadResult.Bad(new DataFormatException(path, index, null, "duplicate_key", RepeatedKeys.Describe(repeated)), JsonSerializer.Serialize(element))
                : RowReadResult.Ok(new DataRow(path, index, JsonObject.Create(element)!));
        }
    }
}
