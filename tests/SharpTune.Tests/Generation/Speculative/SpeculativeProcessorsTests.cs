using SharpTune.Generation;
using SharpTune.Generation.Speculative;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static SharpTune.Tests.Generation.Speculative.SpeculativeDecodingTests;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation.Speculative;

/// <summary>
/// The logits processors under speculative decoding, on stories260K: the repetition, presence and frequency penalties
/// and logit_bias give plain decoding's greedy tokens (each verified position penalised with the prefix before it, as
/// transformers), and sampled tokens follow the model's processed distribution, worked here by hand from its logits.
/// </summary>
public sealed class SpeculativeProcessorsTests
{
    [SharedAssetFact(Stories)]
    public void GreedyWithPenaltiesAndLogitBiasEqualsPlainGreedy()
    {
        using var model = Load();
        using var draft = Load();
        SpeculativeArchitectureTests.Perturb(draft, 0.15, seed: 7);
        var prompt = Prompt("Lily saw a cat. Lily saw a dog. Lily saw a");
        var bare = new GenerationOptions { Temperature = 0, MaxNewTokens = 60 };
        var penalised = bare with { RepetitionPenalty = 1.3, PresencePenalty = 0.4, FrequencyPenalty = 0.3, LogitBias = new Dictionary<int, double> { [prompt[^1]] = 2.0 } };
        var plain = TokenGenerator.Generate(model, [prompt], penalised)[0];
        Assert.NotEqual(TokenGenerator.Generate(model, [prompt], bare)[0].Tokens, plain.Tokens);   // the processors change the text
        foreach (var (name, speculative) in new (string, SpeculativeOptions)[]
        {
            ("perturbed draft", new SpeculativeOptions { DraftModel = draft, NumDraftTokens = 5, ConfidenceThreshold = 0 }),
            ("self draft", new SpeculativeOptions { DraftModel = model, NumDraftTokens = 7, ConfidenceThreshold = 0 }),
            ("prompt lookup", new SpeculativeOptions { PromptLookupTokens = 5 }),
        })
        {
            var fast = TokenGenerator.Generate(model, [prompt], penalised with { Speculative = speculative })[0];
            Assert.True(plain.Tokens.SequenceEqual(fast.Tokens), name);
            // The draft is processed as the model: as its own draft, every candidate is accepted.
            if (name == "self draft") Assert.Equal(fast.Speculation!.Proposed, fast.Speculation.Accepted);
        }
    }

    /// <summary>
    /// Sampling (temperature 1, top-k 6, repetition penalty 1.3) two tokens with a perturbed draft (one candidate, then
    /// the model's token) and with prompt lookup: the first token's frequencies equal p worked from the model's logits
    /// after the prompt, and the second's, after the most frequent first token, p after prompt + that token, within 4.5
    /// standard errors √(p(1−p)/n). The draft's own distribution is further from p than that (checked), so a rule that
    /// let its candidates through unchecked would fail.
    /// </summary>
    [SharedAssetFact(Stories)]
    public void SampledTokensFollowTheModelsProcessedDistribution()
    {
        using var model = Load();
        using var draft = Load();
        SpeculativeArchitectureTests.Perturb(draft, 0.3, seed: 2);
        var prompt = Prompt("Once upon a time, there was a");
        const double penalty = 1.3;
        var options = new GenerationOptions { Temperature = 1.0, TopK = 6, RepetitionPenalty = penalty, MaxNewTokens = 2, EosTokenIds = [] };
        // The check has power: the draft's own first-token distribution is further from p than the tolerance.
        var p = Expected(model, prompt, penalty);
        var q = Expected(draft, prompt, penalty);
        Assert.Contains(p, e => Math.Abs(e.Value - q.GetValueOrDefault(e.Key)) > 2 * 4.5 * Math.Sqrt(e.Value * (1 - e.Value) / 300));
        foreach (var (speculative, n) in new[]
        {
            (new SpeculativeOptions { DraftModel = draft, NumDraftTokens = 1, ConfidenceThreshold = 0 }, 300),
            (new SpeculativeOptions { PromptLookupTokens = 1, MaxMatchingNgramSize = 1 }, 200),
        })
        {
            var samples = Enumerable.Range(0, n)
                .Select(seed => TokenGenerator.Generate(model, [prompt], options with { Seed = seed, Speculative = speculative })[0].Tokens)
                .ToArray();
            Check(p, samples.Select(s => s[0]).ToArray(), "first token");
            var first = samples.GroupBy(s => s[0]).MaxBy(g => g.Count())!;
            Check(Expected(model, [.. prompt, first.Key], penalty), first.Select(s => s[1]).ToArray(), $"second token after {first.Key}");
        }
    }

    /// <summary>p by hand in doubles: the repetition penalty over the tokens seen, then the 6 largest, then softmax.</summary>
    private static Dictionary<int, double> Expected(CausalLanguageModel model, IReadOnlyList<int> ids, double penalty)
    {
        var logits = LastLogits(model, ids).data<float>().Select(v => (double)v).ToArray();
        foreach (var token in ids.Distinct()) logits[token] = logits[token] < 0 ? logits[token] * penalty : logits[token] / penalty;
        var top = logits.Select((value, token) => (value, token)).OrderByDescending(x => x.value).Take(6).ToArray();
        var total = top.Sum(x => Math.Exp(x.value - top[0].value));
        return top.ToDictionary(x => x.token, x => Math.Exp(x.value - top[0].value) / total);
    }

    private static void Check(Dictionary<int, double> expected, int[] tokens, string what)
    {
        Assert.True(tokens.Length >= 100, $"{what}: only {tokens.Length} samples");
        Assert.All(tokens, token => Assert.True(expected.ContainsKey(token), $"{what}: token {token} is outside the top 6"));
        foreach (var (token, p) in expected)
        {
            var observed = (double)tokens.Count(t => t == token) / tokens.Length;
            var tolerance = 4.5 * Math.Sqrt(p * (1 - p) / tokens.Length);
            Assert.True(Math.Abs(observed - p) <= tolerance, $"{what}: token {token} drawn {observed:F4}, p = {p:F4} (± {tolerance:F4})");
        }
    }
}
