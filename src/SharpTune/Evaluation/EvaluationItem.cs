using SharpTune.Data;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Evaluation;

/// <summary>
/// One example as evaluation sees it: the text shown in reports, the prompt the model continues (ids, rendered exactly
/// as training rendered it), the reference answer (null for plain text) and, for classification data, the gold label.
/// </summary>
public sealed record EvaluationItem(TrainingExample Example, string Input, IReadOnlyList<int>? PromptIds, string? Reference, string? GoldLabel)
{
    /// <summary>
    /// Builds the item. Completion, instruction and classification prompts use the shapes of <see cref="PromptFormats"/>
    /// with BOS as the tokenizer adds it; a chat's prompt is every turn before the last assistant turn, rendered with the
    /// generation prompt, and the last assistant turn is the reference.
    /// </summary>
    public static EvaluationItem From(TrainingExample example, HfTokenizer tokenizer, ChatTemplate? template) => example switch
    {
        CompletionExample c => new(example, c.Prompt, EncodePrompt(tokenizer, c.Prompt), c.Completion, null),
        InstructionExample i => new(example, i.Input.Length == 0 ? i.Instruction : i.Instruction + "\n" + i.Input,
            EncodePrompt(tokenizer, PromptFormats.Alpaca(i.Instruction, i.Input)), i.Output, null),
        ClassificationExample c => new(example, c.Text, EncodePrompt(tokenizer, PromptFormats.Classification(c.Text)), c.ClassLabel, c.ClassLabel),
        ChatExample chat => FromChat(chat, tokenizer, template),
        TextExample t => new(example, t.Text, null, null, null),
        _ => throw new NotSupportedException($"{example.Format} examples cannot be evaluated (expected completion, chat, instruction, classification or text)"),
    };

    /// <summary>Prompt ids as <see cref="SftTokenizer"/> encodes a prompt: BOS as configured, never a trailing EOS.</summary>
    public static IReadOnlyList<int> EncodePrompt(HfTokenizer tokenizer, string prompt)
    {
        var ids = tokenizer.Encode(prompt, addSpecialTokens: true).ToList();
        if (tokenizer.EosTokenId is { } eos && ids.Count > 0 && ids[^1] == eos) ids.RemoveAt(ids.Count - 1);
        return ids;
    }

    private static EvaluationItem FromChat(ChatExample chat, HfTokenizer tokenizer, ChatTemplate? template)
    {
        var last = chat.Messages.Count - 1;
        while (last >= 0 && chat.Messages[last].Role != "assistant") last--;
        if (last < 0) throw new InvalidDataException("a chat example has no assistant turn to evaluate against");
        var history = chat.Messages.Take(last).Select(m => m.Message).ToArray();
        var input = string.Join("\n", chat.Messages.Take(last).Where(m => m.Role != "system").Select(m => m.Content));
        if (template is null)
            throw new InvalidOperationException("chat data needs a chat template: the model's tokenizer has none and no adapter stored one");
        var prompt = tokenizer.Encode(template.Render(history, addGenerationPrompt: true, templateArguments: chat.TemplateArguments), addSpecialTokens: false);
        return new EvaluationItem(chat, input, prompt, chat.Messages[last].Content, null);
    }
}
