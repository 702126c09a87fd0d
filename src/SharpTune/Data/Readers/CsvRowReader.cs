using System.Text.Json.Nodes;
using CsvHelper;

namespace SharpTune.Data.Readers;

/// <summary>
/// Streams an RFC 4180 CSV file (header row required) through CsvHelper. Every value is read as a string; a record's
/// number is the physical line it starts on, so quoted multi-line values still point at the right place. Records with
/// broken quoting or the wrong number of fields come back as errors naming that line.
/// </summary>
public static class CsvRowReader
{
    public static IEnumerable<RowReadResult> Read(string path, char separator = ',')
    {
        var malformed = new Queue<CsvMalformedRecord>();
        var options = new CsvReaderOptions
        {
            Separator = separator,
            HasHeader = true,
            TrackLineNumbers = true,
            MalformedData = CsvMalformedDataHandling.Skip,
            FieldCountMismatch = CsvFieldCountHandling.Skip,
            OnMalformedRecord = record => malformed.Enqueue(record),
        };
        using var csv = CsvReader.Create(File.OpenRead(path), options);
        string[] header = [.. csv.Headers];
        ValidateHeader(path, header);
        while (true)
        {
            bool more = csv.Read();
            while (malformed.TryDequeue(out var bad))
                yield return Malformed(path, header, bad);
            if (!more) yield break;
            var fields = new JsonObject();
            for (int i = 0; i < header.Length; i++) fields[header[i]] = csv.GetString(i) ?? "";
            yield return RowReadResult.Ok(new DataRow(path, csv.LineNumber, fields));
        }
    }

    private static RowReadResult Malformed(string path, string[] header, CsvMalformedRecord bad)
    {
        var detail = bad.Reason == CsvMalformedReason.FieldCountMismatch
            ? $"expected {header.Length} columns ({string.Join(",", header)}), found a different number"
            : $"malformed CSV quoting ({bad.Reason})";
        return RowReadResult.Bad(new DataFormatException(path, bad.LineNumber, null, "malformed_csv", detail), bad.RawRecord);
    }

    private static void ValidateHeader(string path, string[] header)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in header)
            if (!seen.Add(name))
                throw new DataFormatException(path, 1, name, "malformed_csv", $"duplicate column name '{name}' in the header");
    }
}
