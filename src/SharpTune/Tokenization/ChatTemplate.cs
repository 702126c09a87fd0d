using SharpTune.Tokenization.Jinja;

namespace SharpTune.Tokenization;

/// <summary>Renders conversations with a model's Jinja chat template or a built-in format.</summary>
public sealed class ChatTemplate
{
    /// <summary>Names accepted by <see cref="BuiltIn"/>.</summary>
    public static IReadOnlyCollection<string> BuiltInNames => BuiltInChatTemplates.All.Keys.ToArray();

    private static string Suggestion => $"pass --chat-template {string.Join('|', BuiltInChatTemplates.All.Keys)} to use a built-in format";

    /// <summary>A parsed template with what its source says about the values it expects.</summary>
    private sealed record Compiled(JinjaTemplate Template, bool ContentParts, bool NoneContent);

    private readonly Compiled _default;
    private readonly Compiled? _toolUse;

    private ChatTemplate(string name, string source, string? bosToken, string? eosToken, string? toolUseSource = null)
    {
        Name = name;
        Source = source;
        ToolUseSource = toolUseSource;
        BosToken = bosToken;
        EosToken = eosToken;
        _default = Compile(name, source);
        _toolUse = toolUseSource is null ? null : Compile(name + " (tool_use)", toolUseSource);
    }

    private ChatTemplate(ChatTemplate template, IReadOnlyDictionary<string, object?>? arguments)
    {
        (Name, Source, ToolUseSource, BosToken, EosToken) = (template.Name, template.Source, template.ToolUseSource, template.BosToken, template.EosToken);
        (_default, _toolUse) = (template._default, template._toolUse);
        Arguments = arguments is { Count: > 0 } ? new Dictionary<string, object?>(arguments) : null;
    }

    private static Compiled Compile(string name, string source)
    {
        try { return new Compiled(JinjaTemplate.Parse(source), ChatTemplateValues.IteratesContentParts(source), ChatTemplateValues.TestsContentForNone(source)); }
        catch (JinjaException e) { throw new ChatTemplateException($"chat template '{name}' cannot be read: {e.Message}; {Suggestion}", e); }
    }

    /// <summary>
    /// The template transformers' apply_chat_template picks: the tokenizer's "tool_use" one when tools are given and it
    /// has one (Cohere's Command R and Aya), else the default.
    /// </summary>
    private Compiled For(IReadOnlyList<ChatTool>? tools) => tools is { Count: > 0 } && _toolUse is not null ? _toolUse : _default;

    /// <summary>"tokenizer" for a model's own template, else the built-in name.</summary>
    public string Name { get; }

    /// <summary>The Jinja source, to store with an adapter so serving renders exactly as training did.</summary>
    public string Source { get; }

    /// <summary>The tokenizer's "tool_use" template, used when tools are given; null when it has none.</summary>
    public string? ToolUseSource { get; }

    public string? BosToken { get; }
    public string? EosToken { get; }

    /// <summary>
    /// Template variables every rendering gets (e.g. a training config's or a server's <c>chat_template_kwargs</c>); a
    /// call's own template arguments override them key by key (see <see cref="ChatTemplateArguments.Merge"/>). Null when none.
    /// </summary>
    public IReadOnlyDictionary<string, object?>? Arguments { get; }

    /// <summary>This template with <paramref name="arguments"/> as its <see cref="Arguments"/> (replacing any it had).</summary>
    public ChatTemplate WithArguments(IReadOnlyDictionary<string, object?>? arguments) => new(this, arguments);

    /// <summary>The tokenizer's own chat_template (from tokenizer_config.json or chat_template.jinja).</summary>
    /// <exception cref="ChatTemplateException">The tokenizer has no template or it is outside the supported subset.</exception>
    public static ChatTemplate FromTokenizer(HfTokenizer tokenizer) =>
        tokenizer.ChatTemplate is { } source
            ? new ChatTemplate("tokenizer", source, tokenizer.BosToken, tokenizer.EosToken, tokenizer.ToolUseChatTemplate)
            : throw new ChatTemplateException($"the tokenizer has no chat_template in tokenizer_config.json; {Suggestion}");

    /// <summary>A built-in format: chatml, chatml-tools, llama-3, llama-2 or zephyr, with that format's usual BOS/EOS strings.</summary>
    public static ChatTemplate BuiltIn(string name) =>
        BuiltInChatTemplates.All.TryGetValue(name, out var d)
            ? new ChatTemplate(name.ToLowerInvariant(), d.Source, d.BosToken, d.EosToken)
            : throw new ChatTemplateException($"unknown chat template '{name}'; built-in ones are {string.Join(", ", BuiltInChatTemplates.All.Keys)}");

    /// <summary>
    /// The chat template of a model or tokenizer folder, read from its tokenizer_config.json / chat_template.jinja
    /// without loading tokenizer.json: the built-in <paramref name="builtInName"/> when given (with the folder's own
    /// BOS/EOS strings where it has them), else the folder's own template.
    /// </summary>
    /// <exception cref="ChatTemplateException">The folder has no template (and no built-in one was named).</exception>
    public static ChatTemplate FromModelDirectory(string dir, string? builtInName = null)
    {
        var config = TokenizerConfig.Read(dir);
        if (builtInName is not null)
        {
            var builtIn = BuiltIn(builtInName);
            return new ChatTemplate(builtIn.Name, builtIn.Source, config.BosToken ?? builtIn.BosToken, config.EosToken ?? builtIn.EosToken);
        }
        return config.ChatTemplate is { } source
            ? new ChatTemplate("tokenizer", source, config.BosToken, config.EosToken, config.ToolUseChatTemplate)
            : throw new ChatTemplateException($"{dir} has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); {Suggestion}");
    }

    /// <summary>Any Jinja template source (e.g. one stored with an adapter), with its "tool_use" companion if it has one.</summary>
    public static ChatTemplate FromSource(string source, string? bosToken, string? eosToken, string? toolUseSource = null) =>
        new("custom", source, bosToken, eosToken, toolUseSource);

    /// <summary>
    /// Writes the template into <paramref name="dir"/> as transformers saves a tokenizer's templates: chat_template.jinja,
    /// and the tool_use one as additional_chat_templates/tool_use.jinja.
    /// </summary>
    public void Save(string dir)
    {
        File.WriteAllText(Path.Combine(dir, TokenizerConfig.TemplateFileName), Source);
        if (ToolUseSource is null) return;
        var toolUse = TokenizerConfig.ToolUseTemplatePath(dir);
        Directory.CreateDirectory(Path.GetDirectoryName(toolUse)!);
        File.WriteAllText(toolUse, ToolUseSource);
    }

    /// <summary>The template <see cref="Save"/> wrote into <paramref name="dir"/>; null when there is none.</summary>
    public static ChatTemplate? FromSaved(string dir, string? bosToken, string? eosToken)
    {
        var (template, toolUse) = TokenizerConfig.ReadTemplateFiles(dir);
        return template is null ? null : FromSource(template, bosToken, eosToken, toolUse);
    }

    /// <summary>
    /// Renders the conversation as transformers' <c>apply_chat_template(messages, tools=tools,
    /// add_generation_prompt=…, continue_final_message=…, tokenize=False)</c> does: the template sees <c>messages</c>,
    /// <c>tools</c> (none when there are none), <c>documents</c> (none unless given among the template arguments),
    /// <c>add_generation_prompt</c>, the special tokens (<c>bos_token</c>, <c>eos_token</c>; "" where the tokenizer has none)
    /// and the template arguments — <see cref="Arguments"/> overridden by <paramref name="templateArguments"/> (e.g. Qwen3's
    /// <c>enable_thinking</c>) — which override the special tokens as transformers' kwargs do. With
    /// <paramref name="addGenerationPrompt"/> the text ends where the assistant's reply begins; with
    /// <paramref name="continueFinalMessage"/> it ends right after the final message's text (no end-of-turn marker), so
    /// the model continues that message ("prefill").
    /// </summary>
    /// <exception cref="ArgumentException">Both <paramref name="addGenerationPrompt"/> and <paramref name="continueFinalMessage"/>.</exception>
    /// <exception cref="ChatTemplateException">The template failed or rejected the conversation (its message is included), or
    /// the final message to continue does not appear in the rendering.</exception>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, IReadOnlyList<ChatTool>? tools = null,
        IReadOnlyDictionary<string, object?>? templateArguments = null, bool continueFinalMessage = false)
    {
        if (continueFinalMessage && addGenerationPrompt)
            throw new ArgumentException("continue_final_message and add_generation_prompt are not compatible: continue_final_message " +
                "continues the final message, add_generation_prompt starts a new assistant message", nameof(continueFinalMessage));
        var rendered = Guard(() =>
        {
            var template = For(tools);
            var values = ChatTemplateValues.Messages(messages, template.ContentParts, template.NoneContent);
            return template.Template.Render(Variables(values, addGenerationPrompt, tools, templateArguments));
        });
        return continueFinalMessage ? EndAtFinalMessage(rendered, messages) : rendered;
    }

    /// <summary>
    /// The rendering cut right after the final message's text, as transformers' continue_final_message cuts it: at the last
    /// occurrence of the text (stripped), keeping its leading/trailing whitespace where the template kept it.
    /// </summary>
    private string EndAtFinalMessage(string rendered, IReadOnlyList<ChatMessage> messages)
    {
        if (messages.Count == 0) throw new ChatTemplateException("continue_final_message needs a final message to continue");
        var final = messages[^1];
        var text = final.ContentParts is { } parts
            ? parts.LastOrDefault(p => p.Part["text"] is not null)?.Part["text"]?.GetValue<string>()
              ?? throw new ChatTemplateException("continue_final_message is set but the final message has no text to continue")
            : final.Content;
        var stripped = text.Trim();
        var at = rendered.LastIndexOf(stripped, StringComparison.Ordinal);
        if (at < 0)
            throw new ChatTemplateException($"continue_final_message is set but chat template '{Name}' does not write the final message's " +
                "text into the rendering (it changes or drops part of it), so the reply cannot continue it");
        var withLeadingTrimmed = text.TrimStart();
        return rendered.AsSpan(at).StartsWith(withLeadingTrimmed, StringComparison.Ordinal) && withLeadingTrimmed == text
            ? rendered[..(at + withLeadingTrimmed.Length)]
            : rendered[..(at + stripped.Length)];
    }

    /// <summary>
    /// Renders the whole conversation and locates each assistant turn in that rendering, as the model will see it in
    /// training: a turn's span covers what the template wrote for that message (its reasoning where the template keeps
    /// it, content, tool calls and end-of-turn marker), less the header the generation prompt supplies at inference.
    /// Turns are found in the full rendering itself (by which message the template was iterating while it wrote each
    /// stretch), so templates that render earlier turns differently once later ones exist — Qwen3 drops the reasoning of
    /// earlier turns — are located exactly.
    /// </summary>
    /// <exception cref="ChatTemplateException">The template failed, or an assistant turn could not be found in the rendering.</exception>
    public RenderedChat RenderWithAssistantSpans(IReadOnlyList<ChatMessage> messages, IReadOnlyList<ChatTool>? tools = null,
        IReadOnlyDictionary<string, object?>? templateArguments = null)
    {
        var template = For(tools);
        var values = ChatTemplateValues.Messages(messages, template.ContentParts, template.NoneContent);
        var (full, ranges) = Guard(() => template.Template.RenderTracked(Variables(values, false, tools, templateArguments), values!));
        var spans = new List<AssistantSpan>();
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role != "assistant") continue;
            var owned = ranges.Where(r => r.Item == i).ToList();
            var prompt = PromptBefore(messages, i, tools, templateArguments);
            if (owned.Count > 0)
            {
                int start = owned[0].Start, end = owned[^1].End;
                spans.Add(new AssistantSpan(i, start + AssistantSpanText.HeaderOverlap(prompt, full.AsSpan(start, end - start)), end));
                continue;
            }
            // The template wrote this turn outside any loop over the messages: fall back to rendering the prefix.
            var through = Render(messages.Take(i + 1).ToList(), addGenerationPrompt: false, tools, templateArguments);
            if (prompt.Length == 0 || !through.StartsWith(prompt, StringComparison.Ordinal) || !full.StartsWith(through, StringComparison.Ordinal))
                throw new ChatTemplateException(
                    $"chat template '{Name}' does not write assistant message {i} inside its loop over the messages and renders earlier " +
                    $"turns differently when later ones follow, so the reply cannot be located for loss masking; {Suggestion}");
            spans.Add(new AssistantSpan(i, prompt.Length, through.Length));
        }
        return new RenderedChat(full, spans);
    }

    /// <summary>The conversation before message <paramref name="index"/> with the generation prompt; "" when the template
    /// refuses that prefix (e.g. one that must start with a user turn).</summary>
    private string PromptBefore(IReadOnlyList<ChatMessage> messages, int index, IReadOnlyList<ChatTool>? tools,
        IReadOnlyDictionary<string, object?>? templateArguments)
    {
        try { return Render(messages.Take(index).ToList(), addGenerationPrompt: true, tools, templateArguments); }
        catch (ChatTemplateException) { return ""; }
    }

    private Dictionary<string, object?> Variables(List<object?> messages, bool addGenerationPrompt, IReadOnlyList<ChatTool>? tools,
        IReadOnlyDictionary<string, object?>? templateArguments)
    {
        // A tokenizer without BOS/EOS gives "" (transformers leaves the name undefined): templates that concatenate
        // bos_token then still render, as they did before tools were passed.
        var variables = new Dictionary<string, object?> { ["bos_token"] = BosToken ?? "", ["eos_token"] = EosToken ?? "" };
        templateArguments = ChatTemplateArguments.Merge(Arguments, templateArguments);
        if (templateArguments is not null)
            foreach (var (key, value) in templateArguments) variables[key] = value;
        variables["messages"] = messages;
        variables["tools"] = ChatTemplateValues.Tools(tools);
        // documents is apply_chat_template's own parameter (retrieval templates: Command R, Granite): given among the
        // template arguments it is passed as that, and none otherwise.
        variables["documents"] = templateArguments?.GetValueOrDefault("documents");
        variables["add_generation_prompt"] = addGenerationPrompt;
        return variables;
    }

    private T Guard<T>(Func<T> render)
    {
        try { return render(); }
        catch (JinjaRaisedException e) { throw new ChatTemplateException($"chat template '{Name}' rejected the conversation: {e.Message}", e); }
        catch (JinjaException e) { throw new ChatTemplateException($"chat template '{Name}' failed: {e.Message}; {Suggestion}", e); }
    }
}
