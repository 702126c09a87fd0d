using SharpTune.Data;
using SharpTune.Data.Readers;

namespace SharpTune.Evaluation;

/// <summary>An evaluation dataset: its rows as read (extra fields such as a group column stay available) and the typed examples.</summary>
public sealed record EvaluationData(string Path, DatasetFormat Format, IReadOnlyList<DataRow> Rows, IReadOnlyList<TrainingExample> Examples)
{
    /// <summary>Reads a JSONL/CSV/Parquet file (or folder), detects its format and maps every row; bad rows are errors naming file and line.</summary>
    public static EvaluationData Read(string path)
    {
        var rows = new DatasetReader().Read(path).ToList();
        if (rows.Count == 0) throw new InvalidDataException($"{path}: no rows to evaluate");
        var format = DatasetFormatDetector.Detect(rows);
        return new EvaluationData(path, format, rows, rows.Select(r => TrainingExampleMapper.Map(r, format)).ToList());
    }

    /// <summary>The string value of <paramref name="field"/> in every row; a row without it is an error naming file and line.</summary>
    public IReadOnlyList<string> Column(string field) => Rows.Select(r => r.Fields[field] switch
    {
        System.Text.Json.Nodes.JsonValue v when v.TryGetValue<string>(out var s) => s,
        System.Text.Json.Nodes.JsonValue v => v.ToJsonString(),
        null => throw new DataFormatException(r.SourceFile, r.LineNumber, field, "missing_field", $"expected a '{field}' value in every row"),
        var other => throw new DataFormatException(r.SourceFile, r.LineNumber, field, "wrong_type", $"expected a string, found {other.ToJsonString()}"),
    }).ToArray();
}
