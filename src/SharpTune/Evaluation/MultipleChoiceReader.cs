using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Data;

namespace SharpTune.Evaluation;

/// <summary>
/// Maps rows exported from the Hugging Face datasets of common benchmarks to the context and choices
/// lm-evaluation-harness builds for them (its task YAMLs arc_easy, hellaswag, mmlu default, piqa; zero-shot).
/// Bad rows are <see cref="DataFormatException"/>s naming file, line and field.
/// </summary>
public static partial class MultipleChoiceReader
{
    /// <summary>The shape of <paramref name="row"/>, or null when it is none of the multiple-choice shapes.</summary>
    public static MultipleChoiceTaskFormat? Detect(DataRow row)
    {
        bool Has(string field) => row.Fields.ContainsKey(field);
        if (Has("ctx_a") && Has("endings")) return MultipleChoiceTaskFormat.Hellaswag;
        if (Has("goal") && Has("sol1") && Has("sol2")) return MultipleChoiceTaskFormat.Piqa;
        if (Has("answerKey") && row.Fields["choices"] is JsonObject) return MultipleChoiceTaskFormat.Arc;
        if (Has("question") && row.Fields["choices"] is JsonArray && Has("answer")) return MultipleChoiceTaskFormat.Mmlu;
        if ((Has("context") || Has("query")) && Has("choices") && Has("gold")) return MultipleChoiceTaskFormat.Generic;
        return null;
    }

    /// <summary>Maps one row of the given shape.</summary>
    public static MultipleChoiceItem Map(DataRow row, MultipleChoiceTaskFormat format) => (format switch
    {
        MultipleChoiceTaskFormat.Generic => Generic(row),
        MultipleChoiceTaskFormat.Arc => Arc(row),
        MultipleChoiceTaskFormat.Hellaswag => Hellaswag(row),
        MultipleChoiceTaskFormat.Mmlu => Mmlu(row),
        MultipleChoiceTaskFormat.Piqa => Piqa(row),
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, null),
    }) with { Location = row.Location };

    private static MultipleChoiceItem Generic(DataRow row)
    {
        var contextField = row.Fields.ContainsKey("context") ? "context" : "query";
        var context = String(row, contextField);
        var choices = Strings(row, "choices");
        var gold = row.Fields["gold"] switch
        {
            JsonArray list => list.Select((_, i) => Index(row, "gold", list[i], choices)).ToArray(),
            var single => [Index(row, "gold", single, choices)],
        };
        if (gold.Length == 0) throw Error(row, "gold", "empty", "expected at least one correct choice");
        return new MultipleChoiceItem(context, choices, gold);
    }

    // arc_easy.yaml: doc_to_text "Question: {{question}}\nAnswer:", doc_to_choice "{{choices.text}}",
    // doc_to_target "{{choices.label.index(answerKey)}}".
    private static MultipleChoiceItem Arc(DataRow row)
    {
        if (row.Fields["choices"] is not JsonObject choices)
            throw Error(row, "choices", "wrong_type", "expected an object {text: [...], label: [...]} as ai2_arc publishes it");
        var text = Strings(row, "choices.text", choices["text"]);
        var labels = Strings(row, "choices.label", choices["label"]);
        if (labels.Count != text.Count) throw Error(row, "choices.label", "length_mismatch", $"expected {text.Count} labels (one per choice text), found {labels.Count}");
        var answer = String(row, "answerKey");
        var gold = labels.ToList().IndexOf(answer);
        if (gold < 0) throw Error(row, "answerKey", "not_a_label", $"'{answer}' is none of the labels {string.Join(", ", labels)}");
        return new MultipleChoiceItem($"Question: {String(row, "question")}\nAnswer:", text, [gold]);
    }

    // hellaswag.yaml with utils.process_docs: query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()),
    // choices = [preprocess(e) for e in endings], gold = int(label).
    private static MultipleChoiceItem Hellaswag(DataRow row)
    {
        var context = String(row, "ctx_a") + " " + Capitalize(String(row, "ctx_b"));
        var choices = Strings(row, "endings").Select(HellaswagPreprocess).ToArray();
        var gold = Index(row, "label", row.Fields["label"], choices);
        return new MultipleChoiceItem(HellaswagPreprocess(String(row, "activity_label") + ": " + context), choices, [gold]);
    }

    // mmlu/default/_default_template_yaml: doc_to_text "{{question.strip()}}\nA. {{choices[0]}}\nB. …\nD. {{choices[3]}}\nAnswer:",
    // doc_to_choice ["A", "B", "C", "D"], doc_to_target answer; each subject's yaml adds the description
    // "The following are multiple choice questions (with answers) about {subject with spaces}.\n\n" before it.
    private static MultipleChoiceItem Mmlu(DataRow row)
    {
        var options = Strings(row, "choices");
        if (options.Count != 4) throw Error(row, "choices", "wrong_count", $"MMLU's prompt lists exactly 4 choices (A–D), found {options.Count}");
        string[] letters = ["A", "B", "C", "D"];
        var description = row.Fields["subject"] is JsonValue v && v.TryGetValue<string>(out var subject) && subject.Length > 0
            ? $"The following are multiple choice questions (with answers) about {subject.Replace('_', ' ')}.\n\n"
            : "";
        var prompt = description + PythonStrip(String(row, "question")) +
            string.Concat(letters.Select((l, i) => $"\n{l}. {options[i]}")) + "\nAnswer:";
        return new MultipleChoiceItem(prompt, letters, [Index(row, "answer", row.Fields["answer"], letters)]);
    }

    // piqa.yaml: doc_to_text "Question: {{goal}}\nAnswer:", doc_to_choice "{{[sol1, sol2]}}", doc_to_target label.
    private static MultipleChoiceItem Piqa(DataRow row)
    {
        string[] choices = [String(row, "sol1"), String(row, "sol2")];
        return new MultipleChoiceItem($"Question: {String(row, "goal")}\nAnswer:", choices, [Index(row, "label", row.Fields["label"], choices)]);
    }

    /// <summary>lm-eval's hellaswag <c>preprocess</c>: strip, " [title]" → ". ", drop "[…]" spans, then "  " → " " once.</summary>
    public static string HellaswagPreprocess(string text)
    {
        text = PythonStrip(text);
        text = text.Replace(" [title]", ". ", StringComparison.Ordinal);
        text = BracketSpan().Replace(text, "");
        return text.Replace("  ", " ", StringComparison.Ordinal);
    }

    [GeneratedRegex(@"\[.*?\]")]
    private static partial Regex BracketSpan();

    /// <summary>Python's <c>str.capitalize</c>: the first character upper-cased, every other one lower-cased.</summary>
    private static string Capitalize(string text) =>
        text.Length == 0 ? text : char.ToUpperInvariant(text[0]) + PythonText.Lower(text[1..]);

    private static string PythonStrip(string text)
    {
        var start = 0;
        while (start < text.Length && PythonText.IsWhitespace(text[start])) start++;
        return PythonText.RStrip(text[start..]);
    }

    /// <summary>
    /// A gold index: an integer, a string of digits (HellaSwag's "label": "3"; lm-eval reads digit strings as ints), or
    /// the correct choice's text (lm-eval's <c>choices.index(gold)</c>). Out of range is an error here, where lm-eval warns
    /// and scores the example 0.
    /// </summary>
    private static int Index(DataRow row, string field, JsonNode? node, IReadOnlyList<string> choices)
    {
        int index;
        if (node is JsonValue value && value.TryGetValue<long>(out var number)) index = (int)Math.Clamp(number, -1, int.MaxValue);
        else if (node is JsonValue text && text.TryGetValue<string>(out var s))
        {
            if (s.Length > 0 && s.All(char.IsAsciiDigit) && int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed)) index = parsed;
            else if (choices.ToList().IndexOf(s) is >= 0 and var position) index = position;
            else throw Error(row, field, "not_a_choice", $"'{s}' is neither an index nor one of the choices");
        }
        else if (node is null) throw Error(row, field, "missing_field", $"expected a '{field}' value (the correct choice's index)");
        else throw Error(row, field, "wrong_type", $"expected an index, found {node.ToJsonString()}");
        if (index < 0 || index >= choices.Count)
            throw Error(row, field, "out_of_range", $"index {index} is outside the {choices.Count} choices");
        return index;
    }

    private static string String(DataRow row, string field) => row.Fields[field] switch
    {
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        null => throw Error(row, field, "missing_field", $"expected a '{field}' string"),
        var other => throw Error(row, field, "wrong_type", $"expected a string, found {other.ToJsonString()}"),
    };

    private static IReadOnlyList<string> Strings(DataRow row, string field) => Strings(row, field, row.Fields[field]);

    private static IReadOnlyList<string> Strings(DataRow row, string field, JsonNode? node)
    {
        if (node is not JsonArray list) throw Error(row, field, node is null ? "missing_field" : "wrong_type", $"expected a list of strings in '{field}'");
        if (list.Count == 0) throw Error(row, field, "empty", "expected at least one choice");
        return list.Select((item, i) => item is JsonValue v && v.TryGetValue<string>(out var s) ? s
            : throw Error(row, field, "wrong_type", $"item {i} should be a string, found {item?.ToJsonString() ?? "null"}")).ToArray();
    }

    private static DataFormatException Error(DataRow row, string field, string reason, string detail) =>
        new(row.SourceFile, row.LineNumber, field, reason, detail);
}
