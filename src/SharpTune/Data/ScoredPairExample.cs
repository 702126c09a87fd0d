using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data;

/// <summary>
/// A pair of texts with a similarity score, in sentence-transformers' columns for CoSENTLoss: <c>sentence1</c>,
/// <c>sentence2</c> and a numeric <c>score</c> (or <c>label</c>), higher meaning more similar: a JSON number, or text
/// holding an invariant-culture number (every CSV/TSV cell is text). Other fields are ignored.
/// </summary>
public sealed record ScoredPairExample(string Sentence1, string Sentence2, double Score) : TrainingExample
{
    /// <summary>The file the row came from, for errors found after reading (a text that encodes to no tokens).</summary>
    public string SourceFile { get; init; } = "";

    /// <summary>The row's 1-based line (record number for CSV, row index for Parquet).</summary>
    public long LineNumber { get; init; }

    public override DatasetFormat Format => DatasetFormat.ScoredPairs;

    public override string TrainingText => Sentence1 + "\n" + Sentence2;

    /// <summary>Reads a row; a missing or empty sentence, or a score that is not a finite number, is an error naming file:line and the field.</summary>
    /// <exception cref="DataFormatException">The row does not hold two non-empty sentences and a numeric score.</exception>
    public static ScoredPairExample FromRow(DataRow row)
    {
        var scoreField = row.Fields.ContainsKey("score") || !row.Fields.ContainsKey("label") ? "score" : "label";
        var score = row.Fields[scoreField] switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.Number && double.IsFinite(v.GetValue<double>()) => v.GetValue<double>(),
            // CSV and TSV readers keep every cell a string, so a score column arrives as "0.8".
            JsonValue v when v.GetValueKind() == JsonValueKind.String && NumericText.TryParseFinite(v.GetValue<string>(), out var parsed) => parsed,
            null => throw new DataFormatException(row.SourceFile, row.LineNumber, scoreField, "missing_field",
                "expected a number (the pair's similarity score, sentence-transformers' score or label column), found " +
                (row.Fields.ContainsKey(scoreField) ? "null" : "no such field")),
            var other => throw new DataFormatException(row.SourceFile, row.LineNumber, scoreField, "wrong_type",
                $"expected a finite number (or text holding one), found {other.ToJsonString()}"),
        };
        return new ScoredPairExample(Text(row, "sentence1"), Text(row, "sentence2"), score) { SourceFile = row.SourceFile, LineNumber = row.LineNumber };
    }

    private static string Text(DataRow row, string field) => row.Fields[field] switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => !string.IsNullOrWhiteSpace(v.GetValue<string>()) ? v.GetValue<string>()
            : throw new DataFormatException(row.SourceFile, row.LineNumber, field, "empty_field", "expected a non-empty string, found an empty one"),
        null => throw new DataFormatException(row.SourceFile, row.LineNumber, field, "missing_field",
            $"expected a non-empty string, found {(row.Fields.ContainsKey(field) ? "null" : "no such field")} (CoSENT rows hold sentence1, sentence2 and score)"),
        var other => throw new DataFormatException(row.SourceFile, row.LineNumber, field, "wrong_type",
            $"expected a string, found {other.GetValueKind().ToString().ToLowerInvariant()}"),
    };
}
