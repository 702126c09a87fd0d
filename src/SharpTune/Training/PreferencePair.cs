namespace SharpTune.Training;

/// <summary>
/// A tokenized preference pair: one prompt shared by both answers, and the chosen and rejected completions (each ending
/// with EOS or the template's end of turn). Only completion tokens are scored. The reference model's summed completion
/// log-probabilities may be precomputed once and carried here (<c>precompute_ref_log_probs</c>).
/// </summary>
public sealed record TokenizedPreferencePair(int[] PromptIds, int[] ChosenIds, int[] RejectedIds)
{
    /// <summary>The frozen reference model's summed log-probability of the chosen completion, when precomputed.</summary>
    public double? ReferenceChosenLogProb { get; init; }

    /// <summary>The frozen reference model's summed log-probability of the rejected completion, when precomputed.</summary>
    public double? ReferenceRejectedLogProb { get; init; }

    /// <summary>Prompt + chosen completion, with only the completion supervised.</summary>
    public TokenizedExample Chosen => Sequence(ChosenIds);

    /// <summary>Prompt + rejected completion, with only the completion supervised.</summary>
    public TokenizedExample Rejected => Sequence(RejectedIds);

    /// <summary>Tokens in both sequences.</summary>
    public int Tokens => 2 * PromptIds.Length + ChosenIds.Length + RejectedIds.Length;

    private TokenizedExample Sequence(int[] completion) =>
        new([.. PromptIds, .. completion], [.. PromptIds.Select(_ => false), .. completion.Select(_ => true)]);
}
