using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Server;

/// <summary>
/// How chat messages become a prompt for one served model: a Jinja chat template (rendered as transformers'
/// <c>apply_chat_template</c> does, so no second BOS is added when encoding), or — for a tokenizer without one — a
/// plain transcript: an optional system text, then "User: …" / "Assistant: …" lines, ending with "Assistant:", encoded
/// with the tokenizer's BOS; generation then also stops at "\nUser:" so the model does not write the next turn.
/// </summary>
public sealed class ChatPromptFormat
{
    private static readonly string[] TranscriptStops = ["\nUser:"];

    private ChatPromptFormat(ChatTemplate? template) => Template = template;

    /// <summary>The Jinja template, or null for the plain transcript.</summary>
    public ChatTemplate? Template { get; }

    /// <summary>"transcript" or the template's name.</summary>
    public string Name => Template?.Name ?? "transcript";

    /// <summary>The plain transcript format.</summary>
    public static ChatPromptFormat Transcript { get; } = new(null);

    /// <summary>Wraps a Jinja chat template.</summary>
    public static ChatPromptFormat FromTemplate(ChatTemplate template) => new(template);

    /// <summary>
    /// The format for the base model: the built-in <paramref name="overrideName"/> when given, else the tokenizer's own
    /// template, else the plain transcript.
    /// </summary>
    public static ChatPromptFormat ForModel(HfTokenizer tokenizer, string? overrideName) =>
        overrideName is not null ? new(ChatTemplate.BuiltIn(overrideName))
        : tokenizer.ChatTemplate is not null ? new(ChatTemplate.FromTokenizer(tokenizer))
        : Transcript;

    /// <summary>
    /// The template stored with an adapter (its <c>chat_template.jinja</c>, or <c>chat_template</c> in its
    /// <c>tokenizer_config.json</c>), so serving renders as training did; null when the adapter stores none.
    /// </summary>
    public static ChatPromptFormat? StoredWithAdapter(string adapterDir, HfTokenizer tokenizer)
    {
        if (ChatTemplate.FromSaved(adapterDir, tokenizer.BosToken, tokenizer.EosToken) is { } saved) return new(saved);
        var config = Path.Combine(adapterDir, "tokenizer_config.json");
        if (!File.Exists(config)) return null;
        JsonNode? json;
        try { json = JsonNode.Parse(File.ReadAllText(config)); }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{config}: not valid JSON: {e.Message}", e); }
        // A single template or transformers' named list (its "tool_use" one kept for requests with tools).
        return json?["chat_template"] is JsonValue or JsonArray ? new(ChatTemplate.FromModelDirectory(adapterDir)) : null;
    }

    private (HfTokenizer Tokenizer, IReadOnlyList<string> Stops)? templateStops;

    /// <summary>
    /// Stop strings this format adds to the request's own: the transcript's next user turn, or the template's
    /// end-of-turn marker where <paramref name="tokenizer"/> has no single special token for it (see <see cref="EndOfTurn"/>).
    /// </summary>
    public IReadOnlyList<string> ImpliedStops(HfTokenizer tokenizer)
    {
        if (Template is not { } template) return TranscriptStops;
        if (templateStops is { } known && ReferenceEquals(known.Tokenizer, tokenizer)) return known.Stops;
        var stops = EndOfTurn.StopStrings(template, tokenizer);
        templateStops = (tokenizer, stops);
        return stops;
    }

    /// <summary>Renders the conversation up to where the assistant's reply begins and encodes it.</summary>
    /// <exception cref="ChatTemplateException">The template rejected the conversation.</exception>
    public IReadOnlyList<int> Encode(IReadOnlyList<ChatMessage> messages, HfTokenizer tokenizer, IReadOnlyList<ChatTool>? tools = null) =>
        tokenizer.Encode(Render(messages, tools), addSpecialTokens: Template is null);

    /// <summary>
    /// The prompt text: the template's rendering (see <see cref="ChatTemplate.Render"/>) with <paramref name="tools"/>,
    /// <paramref name="templateArguments"/> and, by default, the generation prompt; or the transcript, which has no
    /// variables to set and always ends where the assistant's reply begins.
    /// </summary>
    /// <exception cref="ChatTemplateException">The template rejected the conversation.</exception>
    /// <exception cref="InvalidOperationException">The transcript asked to end otherwise than with the reply's header.</exception>
    public string Render(IReadOnlyList<ChatMessage> messages, IReadOnlyList<ChatTool>? tools = null,
        IReadOnlyDictionary<string, object?>? templateArguments = null, bool addGenerationPrompt = true, bool continueFinalMessage = false)
    {
        if (Template is { } template) return template.Render(messages, addGenerationPrompt, tools, templateArguments, continueFinalMessage);
        if (!addGenerationPrompt || continueFinalMessage)
            throw new InvalidOperationException("the model has no chat template (it is prompted with a plain transcript)");
        return RenderTranscript(messages);
    }

    /// <summary>How this format's model writes tool calls (from its template).</summary>
    public SharpTune.Serving.ToolCalls.ToolCallFormat ToolCalls => SharpTune.Serving.ToolCalls.ToolCallFormat.ForTemplate(Template?.Source);

    /// <summary>True when the template writes reasoning in &lt;think&gt; blocks (its output is split into reasoning_content).</summary>
    public bool Reasons => Template?.Source.Contains("<think>", StringComparison.Ordinal) == true;

    /// <summary>The plain transcript text for <paramref name="messages"/>.</summary>
    public static string RenderTranscript(IReadOnlyList<ChatMessage> messages)
    {
        var text = new StringBuilder();
        foreach (var message in messages)
        {
            var line = message.Role switch
            {
                "system" or "developer" => message.Content + "\n\n",
                "assistant" => $"Assistant: {message.Content}\n",
                _ => $"User: {message.Content}\n",
            };
            text.Append(line);
        }
        return text.Append("Assistant:").ToString();
    }
}
