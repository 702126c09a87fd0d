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

    /// <summary>
    /// The file as a multiple-choice benchmark when it is one — a task format named (<paramref name="taskFormat"/>, "auto"
    /// to detect), acc or acc_norm among <paramref name="metrics"/>, or a first row of one of the shapes — else null (the
    /// file is ordinary test data). One rule for every caller: the CLI, the server and library users.
    /// </summary>
    public static MultipleChoiceData? ReadIfMultipleChoice(string path, string? taskFormat, IReadOnlyList<string> metrics)
    {
        var asked = taskFormat is not null || metrics.Any(m => m is EvaluationMetrics.Acc or EvaluationMetrics.AccNorm);
        if (!asked && !Recognizes(path)) return null;
        if (taskFormat is null or "auto") return Read(path);
        return Enum.TryParse<MultipleChoiceTaskFormat>(taskFormat, ignoreCase: true, out var format) && Enum.IsDefined(format)
            ? Read(path, format)
            : throw new ArgumentException($"task format '{taskFormat}' is unknown; expected auto, {string.Join(", ", Enum.GetNames<MultipleChoiceTaskFormat>().Select(n => n.ToLowerInvariant()))}");
    }

    /// <summary>Whether the first row of <paramref name="path"/> has one of the multiple-choice shapes.</summary>
    public static bool Recognizes(string path) =>
        new DatasetReader().Read(path).FirstOrDefault() is { } first && MultipleChoiceReader.Detect(first) is not null;
}
