using SharpTune.Generation.Speculative;

namespace SharpTune.Tests.Generation.Speculative;

/// <summary>
/// The acceptance rule of speculative sampling against the formula worked by hand (accept with min(1, p/q), otherwise
/// draw from norm(max(0, p − q)), a bonus token from p when all are accepted), and a statistical check that what it
/// emits is distributed as the model's own samples.
/// </summary>
public sealed class SpeculativeSamplingTests
{
    /// <summary>A <see cref="Random"/> that returns the given uniforms in order.</summary>
    private sealed class Scripted(params double[] draws) : Random
    {
        private int next;
        public override double NextDouble() => draws[next++];
    }

    private static readonly double[] P0 = [0.1, 0.2, 0.3, 0.4];
    private static readonly double[] Q0 = [0.4, 0.3, 0.2, 0.1];
    private static readonly double[] P1 = [0.25, 0.25, 0.25, 0.25];
    private static readonly double[] Q1 = [0.1, 0.6, 0.2, 0.1];
    private static readonly double[] P2 = [0.5, 0.1, 0.1, 0.3];

    [Fact]
    public void ACandidateTheModelLikesMoreIsAlwaysAccepted()
    {
        // Candidate 3 at position 0: p/q = 0.4/0.1 = 4 ≥ 1, accepted whatever the draw (0.999).
        // Candidate 2 at position 1: p/q = 0.25/0.2 = 1.25, accepted again (0.999). Bonus from P2: 0.55·1 → cumulative
        // 0.5, 0.6 → token 1.
        var (tokens, accepted) = SpeculativeSampling.Accept([P0, P1, P2], [Q0, Q1], [3, 2], new Scripted(0.999, 0.999, 0.55));
        Assert.Equal(2, accepted);
        Assert.Equal([3, 2, 1], tokens);
    }

    [Fact]
    public void ARejectionDrawsFromTheResidualDistribution()
    {
        // Candidate 0 at position 0: p/q = 0.1/0.4 = 0.25. Draw 0.3 > 0.25: rejected.
        // Residual max(0, P0 − Q0) = [0, 0, 0.1, 0.3], total 0.4; draw 0.5·0.4 = 0.2 → past token 2's 0.1 → token 3.
        var (tokens, accepted) = SpeculativeSampling.Accept([P0, P1, P2], [Q0, Q1], [0, 2], new Scripted(0.3, 0.5));
        Assert.Equal(0, accepted);
        Assert.Equal([3], tokens);
        // Draw 0.2 ≤ 0.25: accepted. Position 1, candidate 1: p/q = 0.25/0.6 = 0.41666…; draw 0.5 > it: rejected.
        // Residual max(0, P1 − Q1) = [0.15, 0, 0.05, 0.15], total 0.35; draw 0.3·0.35 = 0.105 < 0.15 → token 0.
        (tokens, accepted) = SpeculativeSampling.Accept([P0, P1, P2], [Q0, Q1], [0, 1], new Scripted(0.2, 0.5, 0.3));
        Assert.Equal(1, accepted);
        Assert.Equal([0, 0], tokens);
        // The boundary: r = p/q exactly is accepted (transformers: r_i <= probability_ratio).
        (_, accepted) = SpeculativeSampling.Accept([P0, P1, P2], [Q0, Q1], [0, 1], new Scripted(0.25, 0.999, 0.0));
        Assert.Equal(1, accepted);
    }

    [Fact]
    public void MatchingAcceptsWhileCandidatesEqualTheModelsChoice()
    {
        static void Check(int[] picked, int[] candidates, int[] tokens, int accepted)
        {
            var result = SpeculativeSampling.AcceptMatching(picked, candidates);
            Assert.Equal(tokens, result.Tokens);
            Assert.Equal(accepted, result.Accepted);
        }
        Check([4, 5, 9, 1], [4, 5, 6], [4, 5, 9], 2);
        Check([7, 5], [4], [7], 0);
        Check([4, 5, 1], [4, 5], [4, 5, 1], 2);
        Check([3], [], [3], 0);
    }

    /// <summary>
    /// Rounds of two draft candidates drawn from q (position-dependent rows) through the rule until two tokens are out;
    /// each emitted position's frequencies must match p's within 4.5 standard errors √(p(1−p)/n) (fixed seed).
    /// </summary>
    [Fact]
    public void EmittedTokensFollowTheModelsDistribution()
    {
        double[][] p = [P0, P1, P2, [0.7, 0.1, 0.1, 0.1]];
        double[][] q = [Q0, Q1, [0.1, 0.1, 0.4, 0.4], [0.25, 0.25, 0.25, 0.25]];
        const int n = 40_000;
        var random = new Random(1234);
        var counts = new int[2, 4];
        for (var i = 0; i < n; i++)
        {
            var sequence = new List<int>();
            while (sequence.Count < 2)
            {
                var at = sequence.Count;
                var candidates = new[] { SpeculativeSampling.Draw(q[at], random), SpeculativeSampling.Draw(q[at + 1], random) };
                var (tokens, _) = SpeculativeSampling.Accept([p[at], p[at + 1], p[at + 2]], [q[at], q[at + 1]], candidates, random);
                sequence.AddRange(tokens);
            }
            counts[0, sequence[0]]++;
            counts[1, sequence[1]]++;
        }
        for (var position = 0; position < 2; position++)
            for (var token = 0; token < 4; token++)
            {
                var expected = p[position][token];
                var tolerance = 4.5 * Math.Sqrt(expected * (1 - expected) / n);
                var observed = (double)counts[position, token] / n;
                Assert.True(Math.Abs(observed - expected) <= tolerance,
                    $"position {position} token {token}: {observed:F4} vs p = {expected} (± {tolerance:F4})");
            }
    }

    /// <summary>The draft's own distribution, without the rule, is visibly different: the check above has power.</summary>
    [Fact]
    public void TheDraftAloneWouldFailThatCheck()
    {
        const int n = 40_000;
        var random = new Random(1234);
        var counts = new int[4];
        for (var i = 0; i < n; i++) counts[SpeculativeSampling.Draw(Q0, random)]++;
        var tolerance = 4.5 * Math.Sqrt(0.1 * 0.9 / n);
        Assert.True(Math.Abs((double)counts[0] / n - P0[0]) > tolerance);
    }

    [Fact]
    public void PromptLookupCopiesWhatFollowedTheFirstMatchOfTheLastNgram()
    {
        var none = new HashSet<int>();
        // Last 2-gram (5, 6) first occurs at 0: the 3 tokens after it.
        Assert.Equal([7, 8, 5], PromptLookup.Candidates([5, 6, 7, 8, 5, 6], 2, 3, none));
        // Capped by the sequence's end: the match at 0 has only 4 tokens after it.
        Assert.Equal([7, 8, 5, 6], PromptLookup.Candidates([5, 6, 7, 8, 5, 6], 2, 10, none));
        // No 2-gram match but the 1-gram 9 occurs at 1.
        Assert.Equal([4, 3], PromptLookup.Candidates([1, 9, 4, 3, 2, 7, 9], 2, 2, none));
        // Nothing matches: no candidates.
        Assert.Empty(PromptLookup.Candidates([1, 2, 3, 4], 2, 5, none));
        // Cut before the first EOS (8); a match cut to nothing ends the search, as transformers.
        Assert.Equal([7], PromptLookup.Candidates([5, 6, 7, 8, 5, 6], 2, 3, new HashSet<int> { 8 }));
        Assert.Empty(PromptLookup.Candidates([5, 6, 8, 7, 5, 6], 2, 3, new HashSet<int> { 8 }));
    }
}
