using SharpTune.Data;
using SharpTune.Data.Readers;

using SharpTune.Jobs;

namespace SharpTune.Server.FineTuning;

/// <summary>What a valid training file holds.</summary>
internal sealed record TrainingFileSummary(DatasetFormat Format, int Examples, bool PromptsOnly = false)
{
    /// <summary>The format recorded with the file: chat lines without any assistant answer are prompts (reinforcement only).</summary>
    public string StoredFormat => PromptsOnly ? TrainingFileValidator.PromptsFormat : Format.ToString();
}

/// <summary>A training file that fails validation: <see cref="LineNumber"/> is 1-based (0 = the file as a whole).</summary>
internal sealed class TrainingFileException(long lineNumber, string message) : Exception(message)
{
    public long LineNumber { get; } = lineNumber;
}

/// <summary>
/// Checks every line of an uploaded fine-tuning file as OpenAI's API does: one JSON object per line in one of its three
/// formats (chat <c>messages</c> with optional per-assistant <c>weight</c> 0/1, legacy <c>prompt</c>/<c>completion</c>,
/// or preference <c>input</c> + <c>preferred_output</c>/<c>non_preferred_output</c> — also spelled
/// <c>preferred_completion</c>/<c>non_preferred_completion</c>), every line the same format, known roles only, and
/// something to train on. Chat lines may carry <c>tools</c> (or the legacy <c>functions</c>), assistant
/// <c>tool_calls</c> without content, and <c>tool</c> messages, under <see cref="ToolCallRules"/>. Field checks come from the library's <see cref="TrainingExampleMapper"/> so the server accepts
/// exactly what the trainer reads — less the layouts OpenAI does not take (ShareGPT <c>conversations</c>), which the
/// trainer reads from local files but an upload here is refused for, as OpenAI refuses it.
/// </summary>
internal static class TrainingFileValidator
{
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool", "function"];

    /// <summary>The stored format of a file of chat prompts with no answers (reinforcement fine-tuning's data).</summary>
    public const string PromptsFormat = "Prompts";

    /// <exception cref="TrainingFileException">The first bad line, with its number in the message.</exception>
    public static TrainingFileSummary Validate(string path)
    {
        DatasetFormat? fileFormat = null;
        long firstLine = 0;
        var examples = 0;
        long? firstPrompt = null, firstAnswered = null;
        foreach (var result in JsonlRowReader.Read(path))
        {
            if (result.Error is { } error) throw Bad(error.LineNumber, error.Detail);
            var row = result.Row!;
            CheckPreferenceSides(row);
            // The trainer reads ShareGPT rows too, but OpenAI's API refuses them, and so does this one.
            if (ShareGptConversation.IsShareGpt(row.Fields))
                throw Bad(row.LineNumber, "field 'conversations': ShareGPT rows are not an OpenAI fine-tuning format; write each as " +
                    "{\"messages\": [{\"role\", \"content\"}]} (human → user, gpt → assistant)");
            var format = DatasetFormatDetector.Detect(row.Fields);
            if (format is not (DatasetFormat.Chat or DatasetFormat.Completion or DatasetFormat.Preference))
                throw Bad(row.LineNumber, $"no fine-tuning format recognised from fields [{string.Join(", ", row.Fields.Select(f => f.Key))}]; " +
                    "expected {\"messages\": [...]}, {\"prompt\", \"completion\"} or {\"input\", \"preferred_output\", \"non_preferred_output\"}");
            if (fileFormat is null) (fileFormat, firstLine) = (format, row.LineNumber);
            else if (format != fileFormat)
                throw Bad(row.LineNumber, $"this line is in {Describe(format.Value)} format but line {firstLine} is in {Describe(fileFormat.Value)} format; use one format per file");
            TrainingExample example;
            try { example = TrainingExampleMapper.Map(row, format.Value); }
            catch (DataFormatException e) { throw Bad(e.LineNumber, e.Field is null ? e.Detail : $"field '{e.Field}': {e.Detail}"); }
            CheckRoles(row.LineNumber, example);
            if (example is ChatExample chat)
            {
                if (chat.Messages.Any(m => m.Role == "assistant")) firstAnswered ??= row.LineNumber;
                else firstPrompt ??= row.LineNumber;
                if (firstPrompt is { } p && firstAnswered is { } a)
                    throw Bad(Math.Max(p, a), $"field 'messages': line {p} has no assistant message (a reinforcement prompt) but line {a} has one; " +
                        "use one kind per file (supervised data needs an assistant answer on every line)");
            }
            examples++;
        }
        if (fileFormat is null) throw new TrainingFileException(0, "the file holds no training examples (it is empty or only blank lines)");
        return new TrainingFileSummary(fileFormat.Value, examples, firstPrompt is not null);
    }

    /// <summary>A preference line must carry both sides, under either spelling; say which one is missing.</summary>
    private static void CheckPreferenceSides(DataRow row)
    {
        if (!row.Fields.ContainsKey("input")) return;
        var preferred = row.Fields.ContainsKey("preferred_output") || row.Fields.ContainsKey("preferred_completion");
        var nonPreferred = row.Fields.ContainsKey("non_preferred_output") || row.Fields.ContainsKey("non_preferred_completion");
        if (preferred && !nonPreferred)
            throw Bad(row.LineNumber, "field 'non_preferred_output': missing; a preference line needs both sides (also spelled non_preferred_completion)");
        if (nonPreferred && !preferred)
            throw Bad(row.LineNumber, "field 'preferred_output': missing; a preference line needs both sides (also spelled preferred_completion)");
    }

    private static void CheckRoles(long line, TrainingExample example)
    {
        switch (example)
        {
            case ChatExample chat:
                for (var i = 0; i < chat.Messages.Count; i++)
                    if (!Roles.Contains(chat.Messages[i].Role))
                        throw Bad(line, $"field 'messages[{i}].role': unknown role '{chat.Messages[i].Role}' (expected system, user, assistant or tool)");
                // A line without any assistant message is a prompt for reinforcement fine-tuning.
                if (chat.Messages.Any(m => m.Role == "assistant") && !chat.Messages.Any(m => m.IsTrained))
                    throw Bad(line, "field 'messages': every assistant message has weight 0, so there is nothing to train on");
                for (var i = 0; i < chat.Messages.Count; i++)
                    if (chat.Messages[i].Weight is not null && chat.Messages[i].Role != "assistant")
                        throw Bad(line, $"field 'messages[{i}].weight': only assistant messages carry a weight, found it on role '{chat.Messages[i].Role}'");
                if (ToolCallRules.FirstProblem(chat) is { } problem)
                    throw Bad(line, $"field '{problem.Field}': {problem.Detail}");
                break;
            case PreferenceExample preference:
                for (var i = 0; i < preference.Prompt.Count; i++)
                    if (!Roles.Contains(preference.Prompt[i].Role))
                        throw Bad(line, $"field 'input.messages[{i}].role': unknown role '{preference.Prompt[i].Role}'");
                if (preference.Chosen.Concat(preference.Rejected).FirstOrDefault(m => m.Role != "assistant") is { } wrong)
                    throw Bad(line, $"preferred and non-preferred outputs must be assistant messages, found role '{wrong.Role}'");
                break;
        }
    }

    private static string Describe(DatasetFormat format) => format switch
    {
        DatasetFormat.Chat => "chat (messages)",
        DatasetFormat.Completion => "prompt/completion",
        DatasetFormat.Preference => "preference",
        _ => format.ToString(),
    };

    private static TrainingFileException Bad(long line, string detail) => new(line, $"line {line}: {detail}");
}
