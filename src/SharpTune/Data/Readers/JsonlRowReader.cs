using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data.Readers;

/// <summary>Streams a JSON Lines file one object per line, keeping 1-based line numbers; blank lines are not rows.</summary>
public static class JsonlRowReader
{
    public static IEnumerable<RowReadResult> Read(string path)
    {
        using var reader = new StreamReader(path, detectEncodingFromByteOrderMarks: true);
        long lineNumber = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            yield return Parse(path, lineNumber, line);
        }
    }

    private static RowReadResult Parse(string path, long lineNumber, string line)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(line);
        }
        catch (JsonException e)
        {
            return RowReadResult.Bad(new DataFormatException(path, lineNumber, null, "malformed_json",
                $"malformed JSON ({e.Message})", e), line);
        }
        if (node is JsonObject obj) return RowReadResult.Ok(new DataRow(path, lineNumber, obj));
        var found = node is null ? "null" : node.GetValueKind().ToString().ToLowerInvariant();
        return RowReadResult.Bad(new DataFormatException(path, lineNumber, null, "not_an_object",
            $"expected a JSON object per line, found {found}"), line);
    }
}
