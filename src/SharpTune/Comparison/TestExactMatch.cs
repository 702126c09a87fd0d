using SharpTune.Data;
using SharpTune.Evaluation;
using SharpTune.Generation;
using SharpTune.Hub;
using SharpTune.Peft;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Comparison;

/// <summary>
/// Exact-match accuracy of greedy answers on test data with short reference answers (completion or chat data), using
/// the saved final model as generate and serve load it. Long answers make exact match meaningless, so then it is null.
/// </summary>
public static class TestExactMatch
{
    /// <summary>Answers longer than this many words are not "short".</summary>
    public const int MaxAnswerWords = 8;

    public static double? Score(TrainingOptions options, string testPath, string finalDirectory, CancellationToken cancellationToken = default)
    {
        var examples = FineTuneJob.ReadExamples(testPath);
        var items = examples.Select(Split).ToArray();
        if (items.Any(i => i is null) || items.Any(i => i!.Value.Answer.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length > MaxAnswerWords))
            return null;
        var isAdapter = File.Exists(Path.Combine(finalDirectory, AdapterFiles.ConfigFileName));
        using var loaded = isAdapter
            ? LoadedModel.Load(ModelLocator.Resolve(options.Model), finalDirectory, chatTemplateName: options.ChatTemplate)
            : LoadedModel.Load(finalDirectory, chatTemplateName: options.ChatTemplate);
        var generator = loaded.CreateTextGenerator();
        var tokenizer = loaded.RequireTokenizer();
        var correct = 0;
        foreach (var item in items)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (prompt, chat, answer) = item!.Value;
            IReadOnlyList<int> ids = chat is null
                ? tokenizer.Encode(prompt, addSpecialTokens: true)
                : tokenizer.Encode((loaded.ChatTemplate ?? throw new InvalidOperationException(
                        $"{testPath}: chat test data needs a chat template (set chat_template)")).Render(chat, addGenerationPrompt: true));
            var maxNew = tokenizer.Encode(answer).Count + 4;
            var text = generator.GenerateFromIds([ids], new GenerationOptions { MaxNewTokens = maxNew, Temperature = 0 },
                cancellationToken: cancellationToken)[0].Text;
            if (ExactMatch.Normalized(text, answer)) correct++;
        }
        return (double)correct / items.Length;
    }

    private static (string Prompt, IReadOnlyList<ChatMessage>? Chat, string Answer)? Split(TrainingExample example) => example switch
    {
        CompletionExample c => (c.Prompt, null, c.Completion),
        ChatExample chat when chat.Messages.Count > 1 && chat.Messages[^1].Role == "assistant" =>
            ("", chat.Messages.SkipLast(1).Select(m => m.Message).ToArray(), chat.Messages[^1].Content),
        _ => null,
    };
}
