namespace SharpTune.Generation.Constrained;

/// <summary>
/// Restricts which tokens one generated sequence may take next (constrained decoding). The decoder asks for the allowed
/// set before each sampling step and reports the token it picked.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>
    /// Sets <paramref name="allowed"/>[id] for every token that may come next (the span is cleared first) when
    /// <paramref name="remainingTokens"/> tokens, this one included, may still be generated.
    /// </summary>
    void FillAllowed(Span<bool> allowed, int remainingTokens);

    /// <summary>Advances past <paramref name="token"/>.</summary>
    /// <exception cref="InvalidOperationException">The token was not allowed.</exception>
    void Accept(int token);

    /// <summary>True when the output so far is complete (an end-of-sequence token is allowed).</summary>
    bool IsComplete { get; }
}
