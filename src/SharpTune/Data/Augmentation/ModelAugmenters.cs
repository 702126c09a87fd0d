using Microsoft.Extensions.AI;

namespace SharpTune.Data.Augmentation;

/// <summary>
/// Paraphrases through any <see cref="IChatClient"/> (an OpenAI-compatible endpoint, or a local model served
/// in-process). <see cref="PromptTemplate"/> must contain <c>{text}</c>.
/// </summary>
public sealed class ParaphraseAugmenter(IChatClient client, string? promptTemplate = null, ChatOptions? chatOptions = null) : ITextAugmenter
{
    public const string DefaultPrompt =
        "Paraphrase the following text. Keep its meaning, its language, and any names, numbers and formatting; " +
        "change the wording. Reply with the paraphrase only.\n\nText:\n{text}";

    public string PromptTemplate { get; } = ModelPrompts.Check(promptTemplate ?? DefaultPrompt, "{text}");

    public string Name => "paraphrase";

    public Task<string?> AugmentAsync(string text, Random random, CancellationToken cancellationToken = default) =>
        ModelPrompts.AskAsync(client, PromptTemplate.Replace("{text}", text), chatOptions, cancellationToken);
}

/// <summary>
/// Back-translation: translates into a pivot language and back through an <see cref="IChatClient"/>. Templates use
/// <c>{text}</c> and <c>{language}</c>.
/// </summary>
public sealed class BackTranslationAugmenter(IChatClient client, string pivotLanguage = "French", string sourceLanguage = "English",
    string? translateTemplate = null, ChatOptions? chatOptions = null) : ITextAugmenter
{
    public const string DefaultTranslatePrompt =
        "Translate the following text into {language}. Keep names, numbers and formatting. Reply with the translation only.\n\nText:\n{text}";

    public string TranslateTemplate { get; } = ModelPrompts.Check(translateTemplate ?? DefaultTranslatePrompt, "{text}", "{language}");

    public string Name => "back-translation";

    public async Task<string?> AugmentAsync(string text, Random random, CancellationToken cancellationToken = default)
    {
        var pivot = await ModelPrompts.AskAsync(client, Fill(text, pivotLanguage), chatOptions, cancellationToken);
        return pivot is null ? null : await ModelPrompts.AskAsync(client, Fill(pivot, sourceLanguage), chatOptions, cancellationToken);
    }

    private string Fill(string text, string language) => TranslateTemplate.Replace("{language}", language).Replace("{text}", text);
}

internal static class ModelPrompts
{
    public static string Check(string template, params string[] placeholders)
    {
        foreach (var p in placeholders)
            if (!template.Contains(p)) throw new ArgumentException($"prompt template must contain {p}: \"{template}\"");
        return template;
    }

    public static async Task<string?> AskAsync(IChatClient client, string prompt, ChatOptions? options, CancellationToken ct)
    {
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, prompt)], options, ct);
        var text = response.Text?.Trim();
        return string.IsNullOrEmpty(text) ? null : text;
    }
}
