using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data.Readers;

/// <summary>
/// Streams a JSON Lines file one object per line, keeping 1-based line numbers; blank lines are not rows. An object that
/// repeats a key (at any depth) is a <c>duplicate_key</c> row error naming the key: a <see cref="JsonObject"/> cannot hold
/// both values (it throws on first use), and which one a writer meant is a guess.
/// </summary>
public static class JsonlRowReader
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static IEnumerable<RowReadResult> Read(string path) => Read(path, new JsonlReadOptions());

    /// <summary>Reads with stricter checks; each failed check is a row error naming the file and line, and reading goes on.</summary>
    public static IEnumerable<RowReadResult> Read(string path, JsonlReadOptions options)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(options);
        return ReadChecked(path, options);
    }

    private static IEnumerable<RowReadResult> ReadChecked(string path, JsonlReadOptions options)
    {
        long lineNumber = 0;
        foreach (var (line, validUtf8) in options.StrictUtf8 ? StrictUtf8Lines(path) : Lines(path))
        {
            lineNumber++;
            if (!validUtf8)
            {
                yield return RowReadResult.Bad(new DataFormatException(path, lineNumber, null, "invalid_utf8", "the line is not valid UTF-8"), line);
                continue;
            }
            if (string.IsNullOrWhiteSpace(line)) continue;
            yield return Parse(path, lineNumber, line);
        }
    }

    private static IEnumerable<(string Line, bool ValidUtf8)> Lines(string path)
    {
        using var reader = new StreamReader(path, detectEncodingFromByteOrderMarks: true);
        while (reader.ReadLine() is { } line) yield return (line, true);
    }

    /// <summary>
    /// Lines split as <see cref="StreamReader.ReadLine"/> splits them (\n, \r or \r\n), each decoded on its own: a strict
    /// StreamReader decodes a whole buffer at once, so its error would fall on whichever line was being read, not the bad one.
    /// </summary>
    private static IEnumerable<(string Line, bool ValidUtf8)> StrictUtf8Lines(string path)
    {
        using var stream = File.OpenRead(path);
        var buffer = new byte[1 << 16];
        var line = new MemoryStream();
        var first = true;
        var afterCarriageReturn = false;
        int read;
        while ((read = stream.Read(buffer)) > 0)
        {
            var start = 0;
            if (afterCarriageReturn && buffer[0] == '\n') start = 1;   // the \n of a \r\n split across reads
            afterCarriageReturn = false;
            while (start < read)
            {
                var end = buffer.AsSpan(start, read - start).IndexOfAny((byte)'\r', (byte)'\n');
                if (end < 0)
                {
                    line.Write(buffer, start, read - start);
                    break;
                }
                line.Write(buffer, start, end);
                var terminator = buffer[start + end];
                start += end + 1;
                if (terminator == '\r')
                {
                    if (start < read && buffer[start] == '\n') start++;
                    else if (start == read) afterCarriageReturn = true;
                }
                yield return Decode(line, first);
                first = false;
                line.SetLength(0);
            }
        }
        if (line.Length > 0) yield return Decode(line, first);
    }

    private static (string Line, bool ValidUtf8) Decode(MemoryStream line, bool first)
    {
        var bytes = line.GetBuffer().AsSpan(0, (int)line.Length);
        if (first && bytes.StartsWith(Encoding.UTF8.Preamble)) bytes = bytes[Encoding.UTF8.Preamble.Length..];
        try { return (StrictUtf8.GetString(bytes), true); }
        catch (DecoderFallbackException) { return (Encoding.UTF8.GetString(bytes), false); }   // the raw text, for a rejects log
    }

    private static readonly JsonDocumentOptions NoDuplicates = new() { AllowDuplicateProperties = false };

    private static RowReadResult Parse(string path, long lineNumber, string line)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(line, documentOptions: NoDuplicates);
        }
        catch (JsonException e)
        {
            if (RepeatedKeys.InText(line) is { } repeated)
                return RowReadResult.Bad(new DataFormatException(path, lineNumber, null, "duplicate_key",
                    RepeatedKeys.Describe(repeated), e), line);
            return RowReadResult.Bad(new DataFormatException(path, lineNumber, null, "malformed_json",
                $"malformed JSON ({e.Message})", e), line);
        }
        if (node is JsonObject obj) return RowReadResult.Ok(new DataRow(path, lineNumber, obj));
        var found = node is null ? "null" : node.GetValueKind().ToString().ToLowerInvariant();
        return RowReadResult.Bad(new DataFormatException(path, lineNumber, null, "not_an_object",
            $"expected a JSON object per line, found {found}"), line);
    }
}
