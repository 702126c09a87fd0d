namespace SharpTune.Data.Readers;

/// <summary>One step of a reader: a parsed row, or the error that made the row unreadable plus its raw text.</summary>
public readonly record struct RowReadResult(DataRow? Row, DataFormatException? Error, string? RawText)
{
    public static RowReadResult Ok(DataRow row) => new(row, null, null);
    public static RowReadResult Bad(DataFormatException error, string? raw) => new(null, error, raw);
}
