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

/// <summary>One chat turn. <paramref name="Weight"/> (assistant turns only) is OpenAI's 0|1 flag: 0 = not trained on.</summary>
public sealed record ChatTurn(string Role, string Content, int? Weight = null)
{
    /// <summary>Whether the trainer should compute loss on this turn: assistant turns whose weight is not 0.</summary>
    public bool IsTrained => Role == "assistant" && Weight != 0;
}

/// <summary>A prompt and the completion the model should learn to produce after it.</summary>
public sealed record CompletionExample(string Prompt, string Completion) : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Completion;
    public override string TrainingText => Prompt + "\n" + Completion;
}

/// <summary>A conversation; loss goes on the assistant turns that <see cref="ChatTurn.IsTrained"/>.</summary>
public sealed record ChatExample(IReadOnlyList<ChatTurn> Messages) : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Chat;
    public override string TrainingText => string.Join("\n", Messages.Select(m => m.Content));
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

/// <summary>A text and its class label.</summary>
public sealed record ClassificationExample(string Text, string ClassLabel) : TrainingExample
{
    public override DatasetFormat Format => DatasetFormat.Classification;
    public override string TrainingText => Text;
    public override string? Label => ClassLabel;
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
