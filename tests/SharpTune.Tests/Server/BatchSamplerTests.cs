using SharpTune.Generation;
using SharpTune.Server.Engine;
using static TorchSharp.torch;

namespace SharpTune.Tests.Server;

/// <summary>
/// The server's one-pass sampler against the library's <see cref="TokenSampler"/> run on each request's rows alone:
/// with a seed, every request must get exactly the library's tokens step after step, whatever its batch neighbours ask
/// for (greedy, other temperatures, top-k, top-p, several rows, constraints).
/// </summary>
public sealed class BatchSamplerTests
{
    private const int Vocabulary = 300;

    private static readonly (double Temperature, double TopP, int TopK, int Rows, long? Seed)[] Requests =
    [
        (0, 1, 0, 1, null),          // greedy
        (0.7, 1, 0, 1, 11),
        (1.3, 0.9, 0, 2, 12),        // n = 2
        (0.9, 1, 20, 1, 13),
        (1, 0.8, 5, 1, 14),
        (0, 1, 0, 1, 15),            // greedy with a seed: the seed is unused
        (0.55, 0.95, 40, 1, 16),
    ];

    private static (List<SamplingGroup> Groups, int Batch) Groups()
    {
        var groups = new List<SamplingGroup>();
        var row = 0;
        foreach (var r in Requests)
        {
            var generator = r.Temperature > 0 && r.Seed is { } seed ? new Generator((ulong)seed, CPU) : null;
            groups.Add(new SamplingGroup(row, r.Rows, r.Temperature, r.TopP, r.TopK, generator));
            row += r.Rows;
        }
        return (groups, row);
    }

    private static TokenSampler[] LibrarySamplers() => Requests
        .Select(r => new TokenSampler(new GenerationOptions { Temperature = r.Temperature, TopP = r.TopP, TopK = r.TopK, Seed = r.Seed }))
        .ToArray();

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void EverySeededRequestGetsTheLibrarysTokensWhateverSharesTheBatch(ScalarType dtype)
    {
        var (groups, batch) = Groups();
        using var sampler = new BatchSampler(groups, batch, Vocabulary);
        var library = LibrarySamplers();
        manual_seed(3);
        var sampledRows = 0;
        for (var step = 0; step < 25; step++)
        {
            using var scope = NewDisposeScope();
            // Peaked enough that top-k and top-p cut, flat enough that sampling is not greedy.
            var logits = (randn(batch, Vocabulary) * 3).to(dtype);
            var picked = sampler.Next(logits, null, _ => true);
            for (var g = 0; g < groups.Count; g++)
            {
                var expected = library[g].Next(logits.narrow(0, groups[g].FirstRow, groups[g].Rows), null);
                Assert.Equal(expected, picked.AsSpan(groups[g].FirstRow, groups[g].Rows).ToArray());
            }
            var argmax = logits.argmax(-1).data<long>().ToArray();
            foreach (var g in groups.Where(g => !g.IsGreedy))
                for (var r = g.FirstRow; r < g.FirstRow + g.Rows; r++)
                    if (picked[r] != argmax[r]) sampledRows++;
        }
        Assert.True(sampledRows > 0, "every sampled row picked the argmax: the comparison did not exercise sampling");
        foreach (var s in library) s.Dispose();
        foreach (var g in groups) g.Generator?.Dispose();
    }

    [Fact]
    public void AConstrainedRowPicksOnlyAllowedTokensAndTheOthersAreUnchanged()
    {
        var (groups, batch) = Groups();
        using var sampler = new BatchSampler(groups, batch, Vocabulary);
        var library = LibrarySamplers();
        manual_seed(5);
        for (var step = 0; step < 10; step++)
        {
            using var scope = NewDisposeScope();
            var logits = randn(batch, Vocabulary) * 3;
            // Rows of requests 1 and 2 (seeded, sampled) may only pick from a few tokens; the rest is unconstrained.
            var few = new[] { 7L + step, 100, 250 };
            var mask = new bool[batch * Vocabulary];
            for (var r = 0; r < batch; r++)
            {
                var constrained = r >= groups[1].FirstRow && r < groups[2].FirstRow + groups[2].Rows;
                for (var t = 0; t < Vocabulary; t++) mask[r * Vocabulary + t] = !constrained || few.Contains(t);
            }
            var allowed = tensor(mask, [batch, Vocabulary]);
            var picked = sampler.Next(logits, allowed, _ => true);
            for (var g = 0; g < groups.Count; g++)
            {
                var rows = allowed.narrow(0, groups[g].FirstRow, groups[g].Rows);
                var constrained = g is 1 or 2 ? rows : null;
                var expected = library[g].Next(logits.narrow(0, groups[g].FirstRow, groups[g].Rows), null, constrained);
                Assert.Equal(expected, picked.AsSpan(groups[g].FirstRow, groups[g].Rows).ToArray());
            }
            for (var r = groups[1].FirstRow; r < groups[2].FirstRow + groups[2].Rows; r++) Assert.Contains(picked[r], few);
        }
        foreach (var s in library) s.Dispose();
        foreach (var g in groups) g.Generator?.Dispose();
    }

    [Fact]
    public void AFinishedRequestsGeneratorIsNotAdvancedAndTheOthersContinueAsAlone()
    {
        var (groups, batch) = Groups();
        using var sampler = new BatchSampler(groups, batch, Vocabulary);
        var library = LibrarySamplers();
        manual_seed(9);
        for (var step = 0; step < 12; step++)
        {
            using var scope = NewDisposeScope();
            var logits = randn(batch, Vocabulary) * 3;
            // Request 3 sits out steps 4-7 (as a finished request's rows do until the batch is compacted): its library
            // twin does not sample then either, so equality afterwards shows its generator was left alone.
            bool Live(int g) => g != 3 || step is < 4 or > 7;
            var picked = sampler.Next(logits, null, Live);
            for (var g = 0; g < groups.Count; g++)
            {
                if (!Live(g)) continue;
                var expected = library[g].Next(logits.narrow(0, groups[g].FirstRow, groups[g].Rows), null);
                Assert.Equal(expected, picked.AsSpan(groups[g].FirstRow, groups[g].Rows).ToArray());
            }
        }
        foreach (var s in library) s.Dispose();
        foreach (var g in groups) g.Generator?.Dispose();
    }

    [Fact]
    public void UnseededRowsSampleOnlyWithinTheirTopKAndNotAlwaysTheArgmax()
    {
        // Two unseeded requests share the batch's generator: top-k 3 keeps each inside its three largest logits.
        List<SamplingGroup> groups = [new(0, 1, 1.0, 1, 3, null), new(1, 2, 2.0, 1, 3, null)];
        using var sampler = new BatchSampler(groups, 3, Vocabulary);
        manual_seed(1);
        var logits = randn(3, Vocabulary);
        var top3 = Enumerable.Range(0, 3).Select(r => logits[r].topk(3).indexes.data<long>().ToArray()).ToArray();
        var notArgmax = 0;
        for (var step = 0; step < 60; step++)
        {
            var picked = sampler.Next(logits, null, _ => true);
            for (var r = 0; r < 3; r++)
            {
                Assert.Contains(picked[r], top3[r]);
                if (picked[r] != top3[r][0]) notArgmax++;
            }
        }
        Assert.True(notArgmax > 10, $"only {notArgmax} of 180 draws left the argmax: the rows are not being sampled");
    }

    [Fact]
    public void UnseededRowsDrawEachTokenAsOftenAsItsProbabilityBesideSeededAndGreedyRows()
    {
        // Row 0 unseeded over a known distribution (two tokens of probability 0 included), row 1 seeded, row 2 greedy.
        double[] p = [0.5, 0.0, 0.3, 0.15, 0.0, 0.05];
        var logRow = p.Select(v => v > 0 ? (float)Math.Log(v) : float.NegativeInfinity).ToArray();
        var logits = stack([tensor(logRow), tensor(logRow), tensor(logRow)]);
        using var seed = new Generator(5, CPU);
        List<SamplingGroup> groups = [new(0, 1, 1.0, 1, 0, null), new(1, 1, 1.0, 1, 0, seed), new(2, 1, 0, 1, 0, null)];
        using var sampler = new BatchSampler(groups, 3, p.Length);
        using var library = new TokenSampler(new GenerationOptions { Temperature = 1.0, TopP = 1, TopK = 0, Seed = 5 });
        const int draws = 20_000;
        var counts = new int[p.Length];
        for (var i = 0; i < draws; i++)
        {
            using var scope = NewDisposeScope();
            var picked = sampler.Next(logits, null, _ => true);
            counts[picked[0]]++;
            Assert.Equal(library.Next(logits.narrow(0, 1, 1), null)[0], picked[1]);   // the seeded row still draws the library's tokens
            Assert.Equal(0, picked[2]);
        }
        for (var t = 0; t < p.Length; t++)
        {
            var sigma = Math.Sqrt(draws * p[t] * (1 - p[t]));
            Assert.True(Math.Abs(counts[t] - draws * p[t]) <= 5 * sigma + (p[t] == 0 ? 0 : 1),
                $"token {t}: drawn {counts[t]} times in {draws}, expected {draws * p[t]:F0} ± {5 * sigma:F0}");
        }
    }
}
