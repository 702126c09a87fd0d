using SharpTune.Generation.Speculative;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation.Speculative;

/// <summary>
/// The acceptance rule of speculative sampling against the formula worked by hand (accept with min(1, p/q), otherwise
/// draw from norm(max(0, p − q)), a bonus token from p when all are accepted), and a statistical check that what it
/// emits is distributed as the model's own samples.
/// </summary>
public sealed class SpeculativeSamplingTests
{
    private static readonly double[] P0 = [0.1, 0.2, 0.3, 0.4];
    private static readonly double[] Q0 = [0.4, 0.3, 0.2, 0.1];
    private static readonly double[] P1 = [0.25, 0.25, 0.25, 0.25];
    private static readonly double[] Q1 = [0.1, 0.6, 0.2, 0.1];
    private static readonly double[] P2 = [0.5, 0.1, 0.1, 0.3];

    private static Tensor Rows(params double[][] rows) =>
        tensor(rows.SelectMany(r => r.Select(v => (float)v)).ToArray(), [rows.Length, rows[0].Length]);

    /// <summary>
    /// The rule with scripted uniforms for the acceptance test and a scripted draw (the first token whose cumulative
    /// weight passes <paramref name="drawAt"/> of the total); also returns the weights the token was drawn from.
    /// </summary>
    private static (int[] Tokens, int Accepted, float[] Weights) Run(double[][] p, double[][] q, int[] candidates, float[] uniforms, double drawAt)
    {
        float[] weights = [];
        var (tokens, accepted) = SpeculativeSampling.Accept(Rows(p), Rows(q), candidates, k => uniforms.Take(k).ToArray(), w =>
        {
            weights = w.data<float>().ToArray();
            var target = drawAt * weights.Sum();
            for (var v = 0; v < weights.Length; v++)
                if ((target -= weights[v]) < 0) return v;
            return weights.Length - 1;
        });
        return (tokens, accepted, weights);
    }

    [Fact]
    public void ACandidateTheModelLikesMoreIsAlwaysAccepted()
    {
        // Candidate 3 at position 0: p/q = 0.4/0.1 = 4 ≥ 1, accepted whatever the draw (0.999).
        // Candidate 2 at position 1: p/q = 0.25/0.2 = 1.25, accepted again (0.999). Bonus from P2: 0.55·1 → cumulative
        // 0.5, 0.6 → token 1.
        var (tokens, accepted, weights) = Run([P0, P1, P2], [Q0, Q1], [3, 2], [0.999f, 0.999f], 0.55);
        Assert.Equal(2, accepted);
        Assert.Equal([3, 2, 1], tokens);
        Assert.Equal(P2.Select(v => (float)v), weights);
    }

    [Fact]
    public void ARejectionDrawsFromTheResidualDistribution()
    {
        // Candidate 0 at position 0: p/q = 0.1/0.4 = 0.25. Draw 0.3 > 0.25: rejected.
        // Residual max(0, P0 − Q0) = [0, 0, 0.1, 0.3], total 0.4; draw 0.5·0.4 = 0.2 → past token 2's 0.1 → token 3.
        var (tokens, accepted, weights) = Run([P0, P1, P2], [Q0, Q1], [0, 2], [0.3f, 0.999f], 0.5);
        Assert.Equal(0, accepted);
        Assert.Equal([3], tokens);
        Assert.Equal([0, 0, 0.1, 0.3], weights.Select(w => Math.Round(w, 6)));
        // Draw 0.2 ≤ 0.25: accepted. Position 1, candidate 1: p/q = 0.25/0.6 = 0.41666…; draw 0.5 > it: rejected.
        // Residual max(0, P1 − Q1) = [0.15, 0, 0.05, 0.15], total 0.35; draw 0.3·0.35 = 0.105 < 0.15 → token 0.
        (tokens, accepted, weights) = Run([P0, P1, P2], [Q0, Q1], [0, 1], [0.2f, 0.5f], 0.3);
        Assert.Equal(1, accepted);
        Assert.Equal([0, 0], tokens);
        Assert.Equal([0.15, 0, 0.05, 0.15], weights.Select(w => Math.Round(w, 6)));
        // The boundary: r = p/q exactly is accepted (transformers: r_i <= probability_ratio; 0.1f / 0.4f is 0.25f exactly).
        (_, accepted, _) = Run([P0, P1, P2], [Q0, Q1], [0, 1], [0.25f, 0.999f], 0.0);
        Assert.Equal(1, accepted);
    }

    /// <summary>
    /// p = q leaves no residual: a rejection there (which only rounding can cause; the scripted uniform above 1 stands
    /// for it) draws from p rather than failing.
    /// </summary>
    [Fact]
    public void AZeroResidualDrawsFromTheModelsRow()
    {
        var (tokens, accepted, weights) = Run([P1, P2], [P1], [2], [1.5f], 0.6);
        Assert.Equal(0, accepted);
        Assert.Equal(P1.Select(v => (float)v), weights);
        Assert.Equal([2], tokens);   // 0.6 of the total: past 0.25, 0.5 → token 2
    }

    [Fact]
    public void MatchingAcceptsWhileCandidatesEqualTheModelsChoice()
    {
        static void Check(long[] picked, int[] candidates, int[] tokens, int accepted)
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
    /// Rounds of two draft candidates drawn from q (position-dependent rows) through the rule, with seeded torch draws as
    /// the decoder makes them, until two tokens are out; each emitted position's frequencies must match p's within 4.5
    /// standard errors √(p(1−p)/n).
    /// </summary>
    [Fact]
    public void EmittedTokensFollowTheModelsDistribution()
    {
        double[][] p = [P0, P1, P2, [0.7, 0.1, 0.1, 0.1]];
        double[][] q = [Q0, Q1, [0.1, 0.1, 0.4, 0.4], [0.25, 0.25, 0.25, 0.25]];
        const int n = 20_000;
        using var generator = new Generator(1234);
        var pRows = Rows(p);
        var qRows = Rows(q);
        var counts = new int[2, 4];
        for (var i = 0; i < n; i++)
        {
            using var scope = NewDisposeScope();
            var sequence = new List<int>();
            while (sequence.Count < 2)
            {
                var at = sequence.Count;
                var candidates = multinomial(qRows.narrow(0, at, 2), 1, false, generator).view(2).data<long>().Select(c => (int)c).ToArray();
                var (tokens, _) = SpeculativeSampling.Accept(pRows.narrow(0, at, 3), qRows.narrow(0, at, 2), candidates,
                    k => rand(k, generator: generator).data<float>().ToArray(),
                    w => (int)multinomial(w.unsqueeze(0), 1, false, generator).item<long>());
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
        const int n = 20_000;
        using var generator = new Generator(1234);
        var draws = multinomial(Rows(Q0), n, true, generator).data<long>().ToArray();
        var tolerance = 4.5 * Math.Sqrt(0.1 * 0.9 / n);
        Assert.True(Math.Abs((double)draws.Count(d => d == 0) / n - P0[0]) > tolerance);
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
