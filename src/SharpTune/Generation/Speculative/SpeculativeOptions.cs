using SharpTune.Models;

namespace SharpTune.Generation.Speculative;

/// <summary>
/// Speculative decoding (transformers' assisted generation): a cheap source proposes candidate tokens and the model
/// checks them all in one forward pass. Either a <see cref="DraftModel"/> (transformers' <c>assistant_model</c>) or
/// prompt lookup (<see cref="PromptLookupTokens"/>, transformers' <c>prompt_lookup_num_tokens</c>), not both. Greedy
/// decoding gives exactly plain greedy decoding's tokens; sampling with a draft model keeps the model's distribution
/// (transformers' <c>_speculative_sampling</c>). One prompt at a time, as transformers.
/// </summary>
public sealed record SpeculativeOptions
{
    /// <summary>The model that proposes candidates; it must share the target's vocabulary (same size). Null: prompt lookup.</summary>
    public CausalLanguageModel? DraftModel { get; init; }

    /// <summary>
    /// Candidates the draft model proposes per round (transformers' <c>num_assistant_tokens</c>, default 20); on the CPU at
    /// most 7 (the fast matrix–vector kernels serve 8 rows, the verification pass feeds the candidates plus one token).
    /// </summary>
    public int NumDraftTokens { get; init; } = 20;

    /// <summary>
    /// transformers' "heuristic" <c>num_assistant_tokens_schedule</c>: after a round whose candidates were all accepted
    /// the draft proposes 2 more, otherwise 1 fewer (at least 1). False (the default, transformers' "constant"): always
    /// <see cref="NumDraftTokens"/>.
    /// </summary>
    public bool HeuristicSchedule { get; init; }

    /// <summary>
    /// transformers' <c>assistant_confidence_threshold</c> (default 0.4; 0 = off): the draft stops proposing once the
    /// probability it gives its own pick (after the processors) falls below it; that pick is still a candidate
    /// (transformers' <c>ConfidenceCriteria</c>). Fixed for the whole generation.
    /// </summary>
    public double ConfidenceThreshold { get; init; } = 0.4;

    /// <summary>Prompt lookup: candidates copied from the earlier context (transformers' <c>prompt_lookup_num_tokens</c>); 0 = off.</summary>
    public int PromptLookupTokens { get; init; }

    /// <summary>Longest n-gram prompt lookup matches (transformers' <c>max_matching_ngram_size</c>, default 2).</summary>
    public int MaxMatchingNgramSize { get; init; } = 2;

    /// <summary>Refuses settings that name no candidate source, two of them, or counts below 1.</summary>
    /// <exception cref="ArgumentException">A setting is out of its range.</exception>
    public void Validate()
    {
        if (DraftModel is null && PromptLookupTokens == 0)
            throw new ArgumentException("speculative decoding needs a draft model (--draft-model) or prompt_lookup_num_tokens (--prompt-lookup) of at least 1");
        if (DraftModel is not null && PromptLookupTokens != 0)
            throw new ArgumentException("speculative decoding takes a draft model (--draft-model) or prompt lookup (--prompt-lookup), not both");
        if (NumDraftTokens < 1) throw new ArgumentException($"num_assistant_tokens (--num-draft-tokens) must be at least 1, found {NumDraftTokens}");
        if (PromptLookupTokens < 0) throw new ArgumentException($"prompt_lookup_num_tokens (--prompt-lookup) must be at least 1 (0: off), found {PromptLookupTokens}");
        if (!(ConfidenceThreshold is >= 0 and < 1))
            throw new ArgumentException($"assistant_confidence_threshold (--draft-confidence) must be at least 0 and below 1 (0: off), found {ConfidenceThreshold}");
        if (MaxMatchingNgramSize < 1) throw new ArgumentException($"max_matching_ngram_size must be at least 1, found {MaxMatchingNgramSize}");
    }
}

/// <summary>How many candidates were proposed and how many the model accepted, over a whole generation.</summary>
public sealed record SpeculativeStats(long Proposed, long Accepted, int Rounds)
{
    /// <summary>Accepted / proposed (0 when nothing was proposed).</summary>
    public double AcceptanceRate => Proposed == 0 ? 0 : (double)Accepted / Proposed;
}
