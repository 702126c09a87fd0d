using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data;

/// <summary>
/// One row for training an embedding model, in sentence-transformers' column conventions: an <c>anchor</c> (the query),
/// its <c>positive</c> (the text it should sit nearest) and optional hard negatives (texts it should not): a string or a
/// list of strings under <c>negative</c>, or columns <c>negative_1</c>, <c>negative_2</c>, … (sentence-transformers'
/// n-tuple layout). An empty <c>negative</c> or <c>negative_N</c> cell (a CSV/TSV row with fewer negatives than the header
/// has columns) is no negative. Other fields are ignored, as the trainer ignores columns its loss does not take.
/// </summary>
public sealed record EmbeddingPairExample(string Anchor, string Positive, IReadOnlyList<string> Negatives) : TrainingExample
{
    /// <summary>The file the row came from, for errors found after reading (a text that encodes to no tokens).</summary>
    public string SourceFile { get; init; } = "";

    /// <summary>The row's 1-based line (record number for CSV, row index for Parquet).</summary>
    public long LineNumber { get; init; }

    /// <summary>The field each negative came from (<c>negative</c>, <c>negative[1]</c>, <c>negative_2</c>), for errors found later.</summary>
    internal IReadOnlyList<string> NegativeFields { get; init; } = [];

    public override DatasetFormat Format => DatasetFormat.EmbeddingPairs;

    public override string TrainingText => string.Join("\n", [Anchor, Positive, .. Negatives]);

    /// <summary>Reads a row; a missing, empty or non-string anchor, positive or negative is an error naming file:line and the field.</summary>
    /// <exception cref="DataFormatException">The row does not hold an anchor and a positive as non-empty strings.</exception>
    public static EmbeddingPairExample FromRow(DataRow row)
    {
        var anchor = Text(row, "anchor", row.Fields["anchor"]);
        var positive = Text(row, "positive", row.Fields["positive"]);
        var negatives = ReadNegatives(row);
        return new EmbeddingPairExample(anchor, positive, negatives.Select(n => n.Text).ToArray())
        {
            SourceFile = row.SourceFile, LineNumber = row.LineNumber, NegativeFields = negatives.Select(n => n.Field).ToArray(),
        };
    }

    /// <summary>
    /// The row's hard negatives with the field each came from: <c>negative</c> (a string or a non-empty list) or
    /// <c>negative_1</c>, <c>negative_2</c>, … in number order; empty cells are no negative.
    /// </summary>
    internal static List<(string Field, string Text)> ReadNegatives(DataRow row)
    {
        var negatives = new List<(string Field, string Text)>();
        switch (row.Fields["negative"])
        {
            case null:
            case var blank when IsEmptyCell(blank):
                break;
            case JsonArray list:
                if (list.Count == 0) throw Error(row, "negative", "empty_field", "expected a string or a non-empty list of strings, found []");
                for (var i = 0; i < list.Count; i++) negatives.Add(($"negative[{i}]", Text(row, $"negative[{i}]", list[i])));
                break;
            case var single:
                negatives.Add(("negative", Text(row, "negative", single)));
                break;
        }
        var numbered = row.Fields
            .Select(f => (f.Key, f.Value, Number: f.Key.StartsWith("negative_", StringComparison.Ordinal)
                && int.TryParse(f.Key["negative_".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : -1))
            .Where(f => f.Number >= 0).OrderBy(f => f.Number).ToList();
        if (numbered.Count > 0 && row.Fields.ContainsKey("negative"))
            throw Error(row, numbered[0].Key, "unexpected_field", "give hard negatives either as 'negative' or as negative_1, negative_2, …, not both");
        foreach (var (key, value, _) in numbered.Where(f => !IsEmptyCell(f.Value))) negatives.Add((key, Text(row, key, value)));
        return negatives;
    }

    // A CSV or TSV file has every column on every row, so a row with fewer hard negatives than the header leaves its
    // extra negative cells empty; the readers hand those over as "" (pandas reads them as missing), meaning no negative.
    private static bool IsEmptyCell(JsonNode? node) => node is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Length == 0;

    private static string Text(DataRow row, string field, JsonNode? node) => node switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>() is { } text && !string.IsNullOrWhiteSpace(text) ? text
            : throw Error(row, field, "empty_field", "expected a non-empty string, found an empty one"),
        null => throw Error(row, field, "missing_field",
            $"expected a non-empty string, found {(row.Fields.ContainsKey(field) || field.Contains('[') ? "null" : "no such field")} (embedding rows hold anchor, positive and optional negative" +
            (row.Fields.ContainsKey("sentence1") ? "; rows of sentence1, sentence2 and score train with loss_type cosent)" : ")")),
        _ => throw Error(row, field, "wrong_type", $"expected a string, found {node.GetValueKind().ToString().ToLowerInvariant()}"),
    };

    private static DataFormatException Error(DataRow row, string field, string reason, string detail) =>
        new(row.SourceFile, row.LineNumber, field, reason, detail);
}
