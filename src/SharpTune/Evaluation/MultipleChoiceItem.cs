namespace SharpTune.Evaluation;

/// <summary>
/// One multiple-choice question as lm-evaluation-harness scores it: the context the model reads, the choices (each
/// scored as the continuation <c>target_delimiter + choice</c>) and the index or indices of the correct choices.
/// </summary>
public sealed record MultipleChoiceItem(string Context, IReadOnlyList<string> Choices, IReadOnlyList<int> Gold)
{
    /// <summary>Where the question was read ("file:line"), for errors about it; null for items made in code.</summary>
    public string? Location { get; init; }
}

/// <summary>The row shapes <see cref="MultipleChoiceData"/> reads, each mapped to the prompt lm-evaluation-harness builds.</summary>
public enum MultipleChoiceTaskFormat
{
    /// <summary><c>{"context" (or "query"), "choices": [...], "gold": index, [indices] or the correct choice's text}</c>, used as is.</summary>
    Generic,
    /// <summary>AI2 ARC: <c>{question, choices: {text, label}, answerKey}</c> → <c>"Question: {question}\nAnswer:"</c>.</summary>
    Arc,
    /// <summary>HellaSwag: <c>{activity_label, ctx_a, ctx_b, endings, label}</c> with lm-eval's <c>preprocess</c>.</summary>
    Hellaswag,
    /// <summary>MMLU: <c>{question, choices (4), answer, subject?}</c> → lm-eval's "A. … D. …\nAnswer:" prompt, choices A–D.</summary>
    Mmlu,
    /// <summary>PIQA: <c>{goal, sol1, sol2, label}</c> → <c>"Question: {goal}\nAnswer:"</c>.</summary>
    Piqa,
}
