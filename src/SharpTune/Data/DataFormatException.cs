namespace SharpTune.Data;

/// <summary>A row that cannot be read or mapped: names the file, the line and (where known) the field.</summary>
public sealed class DataFormatException : Exception
{
    public DataFormatException(string sourceFile, long lineNumber, string? field, string reason, string detail, Exception? inner = null)
        : base(Format(sourceFile, lineNumber, field, detail), inner)
    {
        SourceFile = sourceFile;
        LineNumber = lineNumber;
        Field = field;
        Reason = reason;
        Detail = detail;
    }

    /// <summary>The file holding the bad row.</summary>
    public string SourceFile { get; }

    /// <summary>1-based line (JSONL), record (CSV) or row index (Parquet).</summary>
    public long LineNumber { get; }

    /// <summary>The offending field, or null when the whole row is unreadable.</summary>
    public string? Field { get; }

    /// <summary>A short machine-readable reason, e.g. <c>malformed_json</c> or <c>missing_field</c>; used as the rejects key.</summary>
    public string Reason { get; }

    /// <summary>What was expected and what was found.</summary>
    public string Detail { get; }

    private static string Format(string file, long line, string? field, string detail) =>
        field is null ? $"{file}:{line}: {detail}" : $"{file}:{line}: field '{field}': {detail}";
}
