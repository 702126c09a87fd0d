using System.Text.Json.Nodes;

namespace SharpTune.Data;

/// <summary>
/// One record of a dataset as read from disk, before it is mapped to a training format.
/// </summary>
/// <param name="SourceFile">The file the row came from (a shard path for a Parquet folder).</param>
/// <param name="LineNumber">1-based line in a JSONL file, record number in a CSV file (header excluded), or row index in a Parquet file.</param>
/// <param name="Fields">The row's fields; nested values (chat messages) stay JSON.</param>
public sealed record DataRow(string SourceFile, long LineNumber, JsonObject Fields)
{
    /// <summary>"file:line", the form used in rejects files and reports.</summary>
    public string Location => $"{SourceFile}:{LineNumber}";

    /// <summary>A copy with deep-cloned fields, safe to edit without touching this row.</summary>
    public DataRow CloneWith(JsonObject? fields = null) =>
        this with { Fields = fields ?? (JsonObject)Fields.DeepClone() };
}
