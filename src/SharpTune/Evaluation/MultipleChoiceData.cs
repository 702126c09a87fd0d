using SharpTune.Data;
using SharpTune.Data.Readers;

namespace SharpTune.Evaluation;

/// <summary>A multiple-choice benchmark file: its shape and every question mapped to lm-evaluation-harness's context and choices.</summary>
public sealed record MultipleChoiceData(string Path, MultipleChoiceTaskFormat TaskFormat, IReadOnlyList<MultipleChoiceItem> Items)
{
    /// <summary>
    /// Reads a JSONL/CSV/Parquet file (or folder) of one shape: <paramref name="taskFormat"/>, or detected from the first
    /// row when null. Bad rows are errors naming file, line and field.
    /// </summary>
    public static MultipleChoiceData Read(string path, MultipleChoiceTaskFormat? taskFormat = null)
    {
        var rows = new DatasetReader().Read(path).ToList();
        if (rows.Count == 0) throw new InvalidDataException($"{path}: no rows to evaluate");
        var format = taskFormat ?? MultipleChoiceReader.Detect(rows[0]) ?? throw new InvalidDataException(
            $"{rows[0].Location}: not a multiple-choice row (fields {string.Join(", ", rows[0].Fields.Select(f => f.Key))}); expected " +
            "{context|query, choices, gold}, ARC {question, choices{text,label}, answerKey}, HellaSwag {activity_label, ctx_a, ctx_b, endings, label}, " +
            "MMLU {question, choices, answer} or PIQA {goal, sol1, sol2, label}");
        return new MultipleChoiceData(path, format, rows.Select(r => MultipleChoiceReader.Map(r, format)).ToArray());
    }

    /// <summary>Whether the first row of <paramref name="path"/> has one of the multiple-choice shapes.</summary>
    public static bool Recognizes(string path) =>
        new DatasetReader().Read(path).FirstOrDefault() is { } first && MultipleChoiceReader.Detect(first) is not null;
}
