using System.Text.Json.Nodes;

namespace SharpTune.Data;

/// <summary>Recognises a dataset's training format from its field names.</summary>
public static class DatasetFormatDetector
{
    /// <summary>The format one row's fields suggest, or null when they match none.</summary>
    public static DatasetFormat? Detect(JsonObject fields)
    {
        if (fields.ContainsKey("messages")) return DatasetFormat.Chat;
        if (fields.ContainsKey(ShareGptConversation.Field))   // ShareGPT (LLaMA-Factory, Axolotl)
            return fields.ContainsKey("chosen") || fields.ContainsKey("rejected") ? DatasetFormat.Preference : DatasetFormat.Chat;
        if (fields.ContainsKey("input") &&
            (fields.ContainsKey("preferred_output") || fields.ContainsKey("preferred_completion")))
            return DatasetFormat.Preference;
        if (fields.ContainsKey("chosen") && fields.ContainsKey("rejected")) return DatasetFormat.Preference;
        if (fields.ContainsKey("instruction") && fields.ContainsKey("output")) return DatasetFormat.Instruction;
        if (fields.ContainsKey("prompt") && fields.ContainsKey("completion")) return DatasetFormat.Completion;
        if (fields.ContainsKey("text") && fields.ContainsKey("label")) return DatasetFormat.Classification;
        if (fields.ContainsKey("text")) return DatasetFormat.Text;
        return null;
    }

    /// <summary>
    /// The format most of the first <paramref name="sampleSize"/> rows suggest. Throws when none is recognised, naming
    /// the fields that were found and those each format expects.
    /// </summary>
    public static DatasetFormat Detect(IEnumerable<DataRow> rows, int sampleSize = 200)
    {
        var votes = new Dictionary<DatasetFormat, int>();
        DataRow? first = null;
        foreach (var row in rows.Take(sampleSize))
        {
            first ??= row;
            if (Detect(row.Fields) is { } format) votes[format] = votes.GetValueOrDefault(format) + 1;
        }
        if (first is null) throw new InvalidDataException("the dataset has no rows, so its format cannot be detected");
        if (votes.Count == 0)
            throw new DataFormatException(first.SourceFile, first.LineNumber, null, "unknown_format",
                $"no training format recognised from fields [{string.Join(", ", first.Fields.Select(f => f.Key))}]; expected " +
                "{prompt, completion}, {messages}, {conversations} (ShareGPT), {instruction, output}, {text}, {text, label}, {prompt, chosen, rejected} " +
                "or {input, preferred_output, non_preferred_output}");
        return votes.MaxBy(v => v.Value).Key;
    }
}
