using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Tokenization;

namespace SharpTune.Classification;

/// <summary>One text to classify, tokenized, with its target: a class id, or a number for regression.</summary>
/// <param name="Location">"file:line" of its row.</param>
public sealed record ClassificationItem(int[] Ids, long ClassId, float Target, string Location)
{
    /// <summary>Multi-label classification: 1 at each of the row's label ids, 0 elsewhere (num_labels long); null otherwise.</summary>
    public float[]? LabelVector { get; init; }
}

/// <summary>One preference pair, tokenized, with TRL's optional per-pair margin.</summary>
public sealed record RewardPair(int[] Chosen, int[] Rejected, float? Margin, string SourceFile, long LineNumber);

/// <summary>
/// Reads and tokenizes the data of a sequence-classification or reward run. Rows are the existing formats
/// (classification <c>{"text","label"}</c>, preference <c>{"prompt"?,"chosen","rejected","margin"?}</c> and its chat
/// forms); every error names the row's file and line.
/// </summary>
public static class SequenceClassificationData
{
    /// <summary>The rows of <paramref name="path"/> as classification examples, with their rows.</summary>
    public static IReadOnlyList<(DataRow Row, ClassificationExample Example)> ReadClassification(string path) =>
        new Data.Readers.DatasetReader().Read(path)
            .Select(row => (row, (ClassificationExample)TrainingExampleMapper.Map(row, DatasetFormat.Classification))).ToList();

    /// <summary>The rows of <paramref name="path"/> as preference pairs, with their rows.</summary>
    public static IReadOnlyList<(DataRow Row, PreferenceExample Example)> ReadPreference(string path) =>
        new Data.Readers.DatasetReader().Read(path)
            .Select(row => (row, (PreferenceExample)TrainingExampleMapper.Map(row, DatasetFormat.Preference))).ToList();

    /// <summary>
    /// The label set of a new head: the distinct labels in ordinal order (ids are positions in it); for multi-label rows
    /// every label of every row's list.
    /// </summary>
    public static IReadOnlyList<string> LabelSet(IEnumerable<ClassificationExample> examples) =>
        examples.SelectMany(e => e.ClassLabels ?? [e.ClassLabel]).Distinct().Order(StringComparer.Ordinal).ToList();

    /// <summary>
    /// Tokenizes classification rows as transformers' text-classification examples do (the tokenizer's special tokens
    /// added, truncated to <paramref name="maxLength"/> from the right). With <paramref name="labels"/> a label must be one
    /// of them; with <paramref name="regression"/> it must be a number.
    /// </summary>
    public static IReadOnlyList<ClassificationItem> Tokenize(IEnumerable<(DataRow Row, ClassificationExample Example)> rows, HfTokenizer tokenizer,
        IReadOnlyList<string> labels, bool regression, int maxLength) =>
        Tokenize(rows, tokenizer, labels, regression, maxLength, out _);

    /// <inheritdoc cref="Tokenize(IEnumerable{ValueTuple{DataRow, ClassificationExample}}, HfTokenizer, IReadOnlyList{string}, bool, int)"/>
    /// <param name="truncated">How many texts were cut to <paramref name="maxLength"/>.</param>
    public static IReadOnlyList<ClassificationItem> Tokenize(IEnumerable<(DataRow Row, ClassificationExample Example)> rows, HfTokenizer tokenizer,
        IReadOnlyList<string> labels, bool regression, int maxLength, out int truncated) =>
        Tokenize(rows, tokenizer, labels, regression ? SequenceClassificationConfig.Regression : SequenceClassificationConfig.SingleLabelClassification,
            maxLength, out truncated);

    /// <summary>
    /// Tokenizes classification rows for a head of <paramref name="problemType"/> (one of
    /// <see cref="SequenceClassificationConfig"/>'s): single-label rows name one of <paramref name="labels"/>; regression
    /// rows a number; multi-label rows a list of <paramref name="labels"/> (a single label counts as a list of one),
    /// turned into the multi-hot <see cref="ClassificationItem.LabelVector"/> transformers' BCEWithLogits loss reads.
    /// Texts are encoded with the tokenizer's special tokens and cut to <paramref name="maxLength"/> from the right.
    /// </summary>
    /// <param name="truncated">How many texts were cut to <paramref name="maxLength"/>.</param>
    public static IReadOnlyList<ClassificationItem> Tokenize(IEnumerable<(DataRow Row, ClassificationExample Example)> rows, HfTokenizer tokenizer,
        IReadOnlyList<string> labels, string problemType, int maxLength, out int truncated)
    {
        truncated = 0;
        var ids = labels.Select((label, id) => (label, id)).DistinctBy(p => p.label).ToDictionary(p => p.label, p => p.id);   // the first id of a repeated name, as IndexOf
        var items = new List<ClassificationItem>();
        foreach (var (row, example) in rows)
        {
            long classId = 0;
            float target = 0;
            float[]? vector = null;
            if (problemType == SequenceClassificationConfig.Regression)
            {
                if (example.ClassLabels is not null || !NumericText.TryParseFinite(example.ClassLabel, out var value))
                    throw new DataFormatException(row.SourceFile, row.LineNumber, "label", "wrong_type",
                        $"a regression label must be a number, found '{example.ClassLabel}'");
                target = (float)value;
            }
            else if (problemType == SequenceClassificationConfig.MultiLabelClassification)
            {
                vector = new float[labels.Count];
                foreach (var label in example.ClassLabels ?? [example.ClassLabel])
                    vector[ids.TryGetValue(label, out var id) ? id : throw UnknownLabel(row, label, labels)] = 1;
            }
            else
            {
                if (example.ClassLabels is not null)
                    throw new DataFormatException(row.SourceFile, row.LineNumber, "label", "wrong_type",
                        $"a list of labels ({example.ClassLabel}) needs a multi-label head (task multi_label_classification); single-label rows name one label");
                classId = ids.TryGetValue(example.ClassLabel, out var id) ? id : throw UnknownLabel(row, example.ClassLabel, labels);
            }
            var all = tokenizer.Encode(example.Text, addSpecialTokens: true);
            if (all.Count > maxLength) truncated++;
            var tokens = all.Take(maxLength).ToArray();
            if (tokens.Length == 0)
                throw new DataFormatException(row.SourceFile, row.LineNumber, "text", "empty", "the text encodes to no tokens");
            items.Add(new ClassificationItem(tokens, classId, target, row.Location) { LabelVector = vector });
        }
        return items;
    }

    private static DataFormatException UnknownLabel(DataRow row, string label, IReadOnlyList<string> labels) =>
        new(row.SourceFile, row.LineNumber, "label", "unknown_label", $"label '{label}' is not one of the model's labels ({string.Join(", ", labels)})");

    /// <summary>
    /// Tokenizes preference pairs as TRL's RewardTrainer does: a plain-text pair is prompt + answer with the EOS token
    /// appended (its add_eos step) and the tokenizer's special tokens; a chat pair is the chat template's rendering of
    /// the prompt and answer turns. Pairs with either side over <paramref name="maxLength"/> are dropped (TRL filters
    /// them), counted in the result.
    /// </summary>
    public static (IReadOnlyList<RewardPair> Pairs, int Dropped) Tokenize(IEnumerable<(DataRow Row, PreferenceExample Example)> rows, HfTokenizer tokenizer,
        ChatTemplate? chatTemplate, int maxLength)
    {
        var pairs = new List<RewardPair>();
        var dropped = 0;
        foreach (var (row, example) in rows)
        {
            var chosen = Encode(example, example.Chosen, tokenizer, chatTemplate);
            var rejected = Encode(example, example.Rejected, tokenizer, chatTemplate);
            if (chosen.Length > maxLength || rejected.Length > maxLength) { dropped++; continue; }
            pairs.Add(new RewardPair(chosen, rejected, Margin(row), row.SourceFile, row.LineNumber));
        }
        return (pairs, dropped);
    }

    /// <summary>The ids a reward model reads for <paramref name="text"/> (a plain-text sample): the text, then EOS.</summary>
    public static int[] EncodeForReward(string text, HfTokenizer tokenizer) =>
        WithEos(tokenizer.Encode(text, addSpecialTokens: true), tokenizer);

    /// <summary><paramref name="ids"/> ending in the tokenizer's EOS (added unless already last; unchanged without one).</summary>
    internal static int[] WithEos(IReadOnlyList<int> ids, HfTokenizer tokenizer) =>
        tokenizer.EosTokenId is { } eos && (ids.Count == 0 || ids[^1] != eos) ? [.. ids, eos] : [.. ids];

    private static int[] Encode(PreferenceExample example, IReadOnlyList<ChatTurn> answer, HfTokenizer tokenizer, ChatTemplate? chatTemplate)
    {
        if (example.PlainText || chatTemplate is null)
            return EncodeForReward(example.PromptText + string.Join("\n", answer.Select(t => t.Content)), tokenizer);
        var rendered = chatTemplate.Render([.. example.Prompt.Select(t => t.Message), .. answer.Select(t => t.Message)],
            addGenerationPrompt: false, example.Tools, example.TemplateArguments);
        return [.. tokenizer.Encode(rendered, addSpecialTokens: false)];
    }

    private static float? Margin(DataRow row) => row.Fields["margin"] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => (float)v.GetValue<double>(),
        var other => throw new DataFormatException(row.SourceFile, row.LineNumber, "margin", "wrong_type",
            $"margin must be a number, found {other.GetValueKind().ToString().ToLowerInvariant()}"),
    };
}
