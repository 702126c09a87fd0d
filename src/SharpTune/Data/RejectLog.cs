using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data;

/// <summary>What a reader or cleaner does with a row it cannot use.</summary>
public enum RejectPolicy
{
    /// <summary>Throw a <see cref="DataFormatException"/> naming file, line and field.</summary>
    Throw,

    /// <summary>Record the row in a <see cref="RejectLog"/> with its reason and go on.</summary>
    Record,
}

/// <summary>
/// Collects removed rows: each one is counted under its reason and, when a path was given, written as one JSONL line
/// <c>{"source_file","line","reason","detail","row"}</c> so nothing disappears silently.
/// </summary>
public sealed class RejectLog : IDisposable
{
    private readonly StreamWriter? _writer;
    private readonly Dictionary<string, long> _counts = new(StringComparer.Ordinal);
    private readonly List<string> _examples = [];

    /// <summary>A log that only counts (no file).</summary>
    public RejectLog() { }

    /// <summary>A log that counts and writes every reject to <paramref name="path"/> (created or overwritten).</summary>
    public RejectLog(string path)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        _writer = new StreamWriter(path, append: false, new System.Text.UTF8Encoding(false));
        FilePath = path;
    }

    /// <summary>The rejects file, or null when only counting.</summary>
    public string? FilePath { get; }

    /// <summary>Total rows rejected.</summary>
    public long Total { get; private set; }

    /// <summary>Rejected rows per reason.</summary>
    public IReadOnlyDictionary<string, long> CountsByReason => _counts;

    /// <summary>The first rejects as "file:line: reason: detail" (at most <see cref="ExampleLimit"/>), for summaries.</summary>
    public IReadOnlyList<string> Examples => _examples;

    /// <summary>How many rejects <see cref="Examples"/> keeps.</summary>
    public int ExampleLimit { get; init; } = 20;

    /// <summary>Records a row that could not be read (raw text kept when there is no parsed row).</summary>
    public void Add(DataFormatException error, string? rawText = null, JsonObject? row = null) =>
        Add(error.SourceFile, error.LineNumber, error.Reason, error.Message, row, rawText);

    /// <summary>Records a parsed row removed for <paramref name="reason"/>.</summary>
    public void Add(DataRow row, string reason, string detail) =>
        Add(row.SourceFile, row.LineNumber, reason, detail, row.Fields, null);

    private void Add(string file, long line, string reason, string detail, JsonObject? row, string? raw)
    {
        Total++;
        _counts[reason] = _counts.TryGetValue(reason, out var n) ? n + 1 : 1;
        if (_examples.Count < ExampleLimit) _examples.Add(detail.StartsWith(file, StringComparison.Ordinal) ? $"{reason}: {detail}" : $"{file}:{line}: {reason}: {detail}");
        if (_writer is null) return;
        var entry = new JsonObject
        {
            ["source_file"] = file,
            ["line"] = line,
            ["reason"] = reason,
            ["detail"] = detail,
        };
        if (row is not null) entry["row"] = row.DeepClone();
        else if (raw is not null) entry["raw"] = raw;
        _writer.WriteLine(entry.ToJsonString(JsonOptions.Compact));
    }

    public void Dispose() => _writer?.Dispose();
}

internal static class JsonOptions
{
    public static readonly JsonSerializerOptions Compact = new()
    {
        WriteIndented = false,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}
