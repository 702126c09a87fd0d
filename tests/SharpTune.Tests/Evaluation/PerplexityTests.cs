using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

public class PerplexityTests
{
    [Fact]
    public void UniformDistribution_HasPerplexityEqualToVocabularySize()
    {
        // Every token predicted with probability 1/50 -> perplexity 50 (hand-worked).
        double logProb = Math.Log(1.0 / 50);
        Assert.Equal(50.0, Perplexity.FromTokenLogProbs(Enumerable.Repeat(logProb, 7)), 1e-9);
        Assert.Equal(Math.Log2(50), Perplexity.BitsPerToken(Enumerable.Repeat(logProb, 7)), 1e-9);
    }

    [Fact]
    public void Sequences_AreTokenWeighted()
    {
        // Probabilities 1/2 (one token) and 1/4 (three tokens): exp(-(ln(1/2) + 3 ln(1/4)) / 4) = 2^(7/4),
        // not the mean of per-sequence perplexities (2 + 4) / 2.
        double[][] sequences = [[Math.Log(0.5)], [Math.Log(0.25), Math.Log(0.25), Math.Log(0.25)]];
        Assert.Equal(Math.Pow(2, 7.0 / 4), Perplexity.FromSequenceLogProbs(sequences), 1e-12);
        Assert.Equal(Math.Pow(2, 7.0 / 4), Perplexity.FromTotalNegativeLogLikelihood(7 * Math.Log(2), 4), 1e-12);
        Assert.Equal(Math.E, Perplexity.FromMeanLoss(1.0), 1e-12);
    }

    [Fact]
    public void InvalidInput_IsRejected()
    {
        Assert.Throws<ArgumentException>(() => Perplexity.FromTokenLogProbs([]));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Perplexity.FromTokenLogProbs([-1.0, 0.5]));
        Assert.Contains("Token 1", error.Message);
    }
}

public class ExactMatchTests
{
    [Theory]
    // SQuAD v1.1 normalize_answer: lowercase, strip punctuation, drop articles, collapse whitespace.
    [InlineData("The  Eiffel Tower!", "eiffel tower")]
    [InlineData("An apple, a day", "apple day")]
    [InlineData("theater", "theater")]
    public void Normalize_FollowsSquad(string input, string expected) => Assert.Equal(expected, ExactMatch.Normalize(input));

    [Theory]
    // Expected strings from the SQuAD v1.1 script's normalize_answer run with CPython 3.11 (lower, drop
    // string.punctuation, re.sub(r'\b(a|an|the)\b', ' ', s), ' '.join(s.split())).
    [InlineData("The ΣΟΦΟΣ", "σοφος")]                          // str.lower gives the final sigma
    [InlineData("x\u00b2the end", "x\u00b2the end")]           // '²' is a word character for Python's \b: "the" stays
    [InlineData("A\u0301 cat", "\u0301 cat")]                  // a combining mark is not, so "a" goes
    [InlineData("İ the_a an\u203fthe", "i\u0307 thea \u203f")] // nor is '‿'
    public void Normalize_MatchesSquadScriptUnderPython(string input, string expected) =>
        Assert.Equal(expected, ExactMatch.Normalize(input));

    [Fact]
    public void StrictAndNormalized_Differ()
    {
        Assert.False(ExactMatch.Strict("Paris.", "paris"));
        Assert.True(ExactMatch.Normalized("Paris.", "paris"));
        Assert.Equal(0.5, ExactMatch.Score(["Paris.", "Rome"], ["paris", "Madrid"]), 1e-12);
        Assert.Equal(0.0, ExactMatch.Score(["Paris.", "Rome"], ["paris", "Madrid"], normalize: false), 1e-12);
        Assert.Equal(1.0, ExactMatch.Score(["Rome"], [(IReadOnlyList<string>)["Madrid", "rome"]]), 1e-12);
    }
}
