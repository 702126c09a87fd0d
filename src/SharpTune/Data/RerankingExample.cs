using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Data;

/// <summary>One document a reranking row pairs with its query, and how relevant it is (0 to 1).</summary>
/// <param name="Field">The row's field the document came from, for errors found later.</param>
public sealed record RerankingCandidate(string Document, double Label, string Field);

/// <summary>
/// One row for training a cross-encoder (reranker), in sentence-transformers' columns for BinaryCrossEntropyLoss: a
/// <c>query</c> with a <c>document</c> (or <c>passage</c>, <c>text</c>, <c>response</c>) and a <c>label</c> (or
/// <c>score</c>) from 0 to 1 (1 relevant, 0 not, or a graded relevance), or a <c>query</c> with its <c>positive</c> and
/// hard negatives (<c>negative</c> as a string or list, or <c>negative_1</c>, <c>negative_2</c>, …), which become pairs
/// labelled 1 and 0. Other fields are ignored, as the trainer ignores columns its loss does not take.
/// </summary>
public sealed record RerankingExample(string Query, IReadOnlyList<RerankingCandidate> Candidates) : TrainingExample
{
    /// <summary>The fields a pair row's document may be under, in the order they are looked for.</summary>
    public static IReadOnlyList<string> DocumentFields { get; } = ["document", "passage", "text", "response"];

    /// <summary>The file the row came from, for errors found after reading (a pair that encodes to no tokens).</summary>
    public string SourceFile { get; init; } = "";

    /// <summary>The row's 1-based line (record number for CSV, row index for Parquet).</summary>
    public long LineNumber { get; init; }

    public override DatasetFormat Format => DatasetFormat.RerankingPairs;

    public override string TrainingText => string.Join("\n", [Query, .. Candidates.Select(c => c.Document)]);

    /// <summary>Reads a row; a missing or empty text, or a label that is not a number from 0 to 1, is an error naming file:line and the field.</summary>
    /// <exception cref="DataFormatException">The row holds neither layout.</exception>
    public static RerankingExample FromRow(DataRow row)
    {
        var query = Text(row, "query");
        var documentField = DocumentFields.FirstOrDefault(row.Fields.ContainsKey);
        if (row.Fields.ContainsKey("positive"))
        {
            if (documentField is not null)
                throw Error(row, documentField, "unexpected_field", "a row holds either a document and its label or a positive and negatives, not both");
            var candidates = new List<RerankingCandidate> { new(Text(row, "positive"), 1, "positive") };
            candidates.AddRange(EmbeddingPairExample.ReadNegatives(row).Select(n => new RerankingCandidate(n.Text, 0, n.Field)));
            return new RerankingExample(query, candidates) { SourceFile = row.SourceFile, LineNumber = row.LineNumber };
        }
        if (documentField is null)
            throw Error(row, "document", "missing_field",
                $"expected a document ({string.Join(", ", DocumentFields)}) with a label, or a positive with negatives, found neither");
        var labelField = row.Fields.ContainsKey("label") || !row.Fields.ContainsKey("score") ? "label" : "score";
        var label = row.Fields[labelField] switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.Number => v.GetValue<double>(),
            JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>() ? 1 : 0,
            // CSV and TSV readers keep every cell a string, so a label column arrives as "1" or "0.8".
            JsonValue v when v.GetValueKind() == JsonValueKind.String && NumericText.TryParseFinite(v.GetValue<string>(), out var parsed) => parsed,
            null => throw Error(row, labelField, "missing_field",
                $"expected the pair's relevance from 0 to 1, found {(row.Fields.ContainsKey(labelField) ? "null" : "no such field")}"),
            var other => throw Error(row, labelField, "wrong_type", $"expected a number from 0 to 1, found {other.ToJsonString()}"),
        };
        if (!(label is >= 0 and <= 1))
            throw Error(row, labelField, "out_of_range", $"binary cross-entropy takes a relevance from 0 to 1, found {label}");
        return new RerankingExample(query, [new RerankingCandidate(Text(row, documentField), label, documentField)])
        {
            SourceFile = row.SourceFile, LineNumber = row.LineNumber,
        };
    }

    private static string Text(DataRow row, string field) => row.Fields[field] switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>() is { } text && !string.IsNullOrWhiteSpace(text) ? text
            : throw Error(row, field, "empty_field", "expected a non-empty string, found an empty one"),
        null => throw Error(row, field, "missing_field",
            $"expected a non-empty string, found {(row.Fields.ContainsKey(field) ? "null" : "no such field")} (reranking rows hold query with document and label, or query, positive and negative)"),
        var node => throw Error(row, field, "wrong_type", $"expected a string, found {node.GetValueKind().ToString().ToLowerInvariant()}"),
    };

    private static DataFormatException Error(DataRow row, string field, string reason, string detail) =>
        new(row.SourceFile, row.LineNumber, field, reason, detail);
}
