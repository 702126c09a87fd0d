using SharpTune.Tokenization;

namespace SharpTune.Data;

/// <summary>
/// A row mapped to its training format. <see cref="TrainingText"/> is the text curation looks at (dedup, lengths,
/// filters); the trainer renders each concrete type with the model's chat template or plain concatenation.
/// </summary>
public abstract record TrainingExample
{
    /// <summary>The format this example belongs to.</summary>
    public abstract DatasetFormat Format { get; }

    /// <summary>All the example's text joined with newlines, in reading order.</summary>
    public abstract string TrainingText { get; }

    /// <summary>The class label for classification examples; null otherwise.</summary>
    public virtual string? Label => null;
}

/// <summary>
/// One chat turn: the message (with its tool calls, tool-call id, reasoning, content parts) and OpenAI's 0|1
/// <paramref name="Weight"/> flag (assistant turns only): 0 = not trained on.
/// </summary>
public sealed record ChatTurn(ChatMessage Message, int? Weight)
{
    /// <summary>A plain text turn.</summary>
    public ChatTurn(string Role, string Content, int? Weight = null) : this(new ChatMessage(Role, Content), Weight) { }

    public string Role => Message.Role;

    /// <summary>The message's text ("" for an assistant message that only calls tools).</summary>
    public string Content => Message.Content;

    /// <summary>Whether the trainer should compute loss on this turn: assistant turns whose weight is not 0.</summary>
    public bool IsTrained => Role == "assistant" && Weight != 0;

    /// <summary>Everything the turn says, for curation: reasoning, content, and each tool call as name(arguments).</summary>
    public string AllText => string.Join("\n", new[] { Message.ReasoningContent, Content }
        .Concat(Message.ToolCalls.Select(c => $"{c.Name}({c.ArgumentsJson})"))
        .Where(t => !string.IsNullOrEmpty(t)));
}

/// <summary>A prompt and the completion the model should learn to produce after it.</summary>
public sealed record CompletionExample(string Prompt, string Completion) : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Completion;
    public override string TrainingText => Prompt + "\n" + Completion;
}

/// <summary>
/// A conversation; loss goes on the assistant turns that <see cref="ChatTurn.IsTrained"/> (their content, reasoning and
/// tool calls as the template renders them). <see cref="Tools"/> is the example's own <c>tools</c> list, which the chat
/// template renders (usually into the system turn).
/// </summary>
public sealed record ChatExample(IReadOnlyList<ChatTurn> Messages) : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Chat;
    public override string TrainingText => string.Join("\n", Messages.Select(m => m.AllText));

    /// <summary>The functions this example's model may call; null when the example gives none.</summary>
    public IReadOnlyList<ChatTool>? Tools { get; init; }

    /// <summary>The row's own <c>chat_template_kwargs</c> (TRL's per-row column), over the run's; null when it has none.</summary>
    public IReadOnlyDictionary<string, object?>? TemplateArguments { get; init; }

    /// <summary>The messages as the chat template receives them.</summary>
    public IReadOnlyList<ChatMessage> ChatMessages => Messages.Select(m => m.Message).ToArray();
}

/// <summary>An Alpaca-style instruction with optional input and the expected output.</summary>
public sealed record InstructionExample(string Instruction, string Input, string Output) : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Instruction;
    public override string TrainingText =>
        Input.Length == 0 ? Instruction + "\n" + Output : Instruction + "\n" + Input + "\n" + Output;
}

/// <summary>Plain text, all of it trained on.</summary>
public sealed record TextExample(string Text) : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Text;
    public override string TrainingText => Text;
}

/// <summary>
/// A text and its class label. A row whose <c>label</c> is a list (multi-label classification) also carries the list in
/// <see cref="ClassLabels"/>; its <see cref="ClassLabel"/> is then the labels joined with commas (what stratified splits
/// and inspection group by).
/// </summary>
public sealed record ClassificationExample(string Text, string ClassLabel) : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Classification;
    public override string TrainingText => Text;
    public override string? Label => ClassLabel;

    /// <summary>The row's labels when its <c>label</c> is a list (possibly empty); null for a single label.</summary>
    public IReadOnlyList<string>? ClassLabels { get; init; }
}

/// <summary>
/// A preference pair for DPO-style training: a prompt (as chat turns; a plain-text prompt is one user turn) and the
/// preferred and non-preferred continuations (assistant turns; a plain-text answer is one assistant turn).
/// </summary>
public sealed record PreferenceExample(IReadOnlyList<ChatTurn> Prompt, IReadOnlyList<ChatTurn> Chosen, IReadOnlyList<ChatTurn> Rejected)
    : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Preference;

    public override string TrainingText => string.Join("\n", Prompt.Concat(Chosen).Concat(Rejected).Select(m => m.Content));

    /// <summary>
    /// The prompt came as a plain string (<c>{"prompt": "…"}</c>) rather than chat messages, so DPO renders it as plain
    /// text even when a chat template exists (as TRL treats "standard" versus "conversational" preference data).
    /// </summary>
    public bool PlainText { get; init; }

    /// <summary>The row's own <c>tools</c>, which the chat template renders with the prompt (TRL passes each row's tools to
    /// <c>apply_chat_template</c>); null when it has none.</summary>
    public IReadOnlyList<ChatTool>? Tools { get; init; }

    /// <summary>The row's own <c>chat_template_kwargs</c> (TRL's per-row column), over the run's; null when it has none.</summary>
    public IReadOnlyDictionary<string, object?>? TemplateArguments { get; init; }

    /// <summary>The prompt's text (turn contents joined with newlines).</summary>
    public string PromptText => string.Join("\n", Prompt.Select(m => m.Content));

    /// <summary>The preferred answer's text.</summary>
    public string ChosenText => string.Join("\n", Chosen.Select(m => m.Content));

    /// <summary>The non-preferred answer's text.</summary>
    public string RejectedText => string.Join("\n", Rejected.Select(m => m.Content));

    /// <summary>A pair from plain strings: one user turn, one assistant turn each.</summary>
    public static PreferenceExample FromText(string prompt, string chosen, string rejected) =>
        new([new ChatTurn("user", prompt)], [new ChatTurn("assistant", chosen)], [new ChatTurn("assistant", rejected)]) { PlainText = true };
}
