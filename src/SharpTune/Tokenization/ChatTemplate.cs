using SharpTune.Tokenization.Jinja;

namespace SharpTune.Tokenization;

/// <summary>Renders conversations with a model's Jinja chat template or a built-in format.</summary>
public sealed class ChatTemplate
{
    /// <summary>Names accepted by <see cref="BuiltIn"/>.</summary>
    public static IReadOnlyCollection<string> BuiltInNames => BuiltInChatTemplates.All.Keys.ToArray();

    private static string Suggestion => $"pass --chat-template {string.Join('|', BuiltInChatTemplates.All.Keys)} to use a built-in format";

    private readonly JinjaTemplate _template;

    private ChatTemplate(string name, string source, string? bosToken, string? eosToken)
    {
        Name = name;
        Source = source;
        BosToken = bosToken;
        EosToken = eosToken;
        try { _template = JinjaTemplate.Parse(source); }
        catch (JinjaException e) { throw new ChatTemplateException($"chat template '{name}' cannot be read: {e.Message}; {Suggestion}", e); }
    }

    /// <summary>"tokenizer" for a model's own template, else the built-in name.</summary>
    public string Name { get; }

    /// <summary>The Jinja source, to store with an adapter so serving renders exactly as training did.</summary>
    public string Source { get; }

    public string? BosToken { get; }
    public string? EosToken { get; }

    /// <summary>The tokenizer's own chat_template (from tokenizer_config.json or chat_template.jinja).</summary>
    /// <exception cref="ChatTemplateException">The tokenizer has no template or it is outside the supported subset.</exception>
    public static ChatTemplate FromTokenizer(HfTokenizer tokenizer) =>
        tokenizer.ChatTemplate is { } source
            ? new ChatTemplate("tokenizer", source, tokenizer.BosToken, tokenizer.EosToken)
            : throw new ChatTemplateException($"the tokenizer has no chat_template in tokenizer_config.json; {Suggestion}");

    /// <summary>A built-in format: chatml, llama-3, llama-2 or zephyr, with that format's usual BOS/EOS strings.</summary>
    public static ChatTemplate BuiltIn(string name) =>
        BuiltInChatTemplates.All.TryGetValue(name, out var d)
            ? new ChatTemplate(name.ToLowerInvariant(), d.Source, d.BosToken, d.EosToken)
            : throw new ChatTemplateException($"unknown chat template '{name}'; built-in ones are {string.Join(", ", BuiltInChatTemplates.All.Keys)}");

    /// <summary>Any Jinja template source (e.g. one stored with an adapter).</summary>
    public static ChatTemplate FromSource(string source, string? bosToken, string? eosToken) => new("custom", source, bosToken, eosToken);

    /// <summary>Renders the conversation; with <paramref name="addGenerationPrompt"/> the text ends where the assistant's reply begins.</summary>
    /// <exception cref="ChatTemplateException">The template failed or rejected the conversation (its message is included).</exception>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        var variables = new Dictionary<string, object?>
        {
            ["messages"] = messages.Select(m => new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = BosToken ?? "",
            ["eos_token"] = EosToken ?? "",
        };
        try { return _template.Render(variables); }
        catch (JinjaRaisedException e) { throw new ChatTemplateException($"chat template '{Name}' rejected the conversation: {e.Message}", e); }
        catch (JinjaException e) { throw new ChatTemplateException($"chat template '{Name}' failed: {e.Message}; {Suggestion}", e); }
    }

    /// <summary>
    /// Renders the whole conversation and locates each assistant message: its span runs from the end of the rendering of
    /// the preceding messages with the generation prompt to the end of the rendering that includes the message, so it
    /// covers the content and whatever the template writes after it for that turn (the end-of-turn token).
    /// </summary>
    /// <exception cref="ChatTemplateException">The template renders earlier turns differently once later ones exist.</exception>
    public RenderedChat RenderWithAssistantSpans(IReadOnlyList<ChatMessage> messages)
    {
        var full = Render(messages, addGenerationPrompt: false);
        var spans = new List<AssistantSpan>();
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role != "assistant") continue;
            var before = Render(messages.Take(i).ToList(), addGenerationPrompt: true);
            var through = Render(messages.Take(i + 1).ToList(), addGenerationPrompt: false);
            if (!through.StartsWith(before, StringComparison.Ordinal) || !full.StartsWith(through, StringComparison.Ordinal))
                throw new ChatTemplateException(
                    $"chat template '{Name}' renders earlier turns differently when later ones follow (at message {i}), so assistant " +
                    $"replies cannot be located for loss masking; {Suggestion}");
            spans.Add(new AssistantSpan(i, before.Length, through.Length));
        }
        return new RenderedChat(full, spans);
    }
}
