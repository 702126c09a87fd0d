using SharpTune.Generation;
using SharpTune.Generation.Speculative;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation.Speculative;

/// <summary>
/// Greedy speculative decoding on the real stories260K must give plain greedy decoding's tokens one for one, whatever
/// the candidates: the model itself as draft (every candidate accepted), a perturbed copy (some rejected, rolled back out
/// of both caches), prompt lookup, a LoRA adapter on the model, and the EOS / max_new_tokens edges.
/// </summary>
public sealed class SpeculativeDecodingTests
{
    /// <summary>The shared asset the speculative decoding tests run on.</summary>
    internal const string Stories = "models/stories260K";

    /// <summary>stories260K in fp32.</summary>
    internal static CausalLanguageModel Load() => PretrainedModel.Load(TestAssets.Stories260K, ScalarType.Float32);

    /// <summary>The prompt's ids with stories260K's tokenizer and its specials.</summary>
    internal static IReadOnlyList<int> Prompt(string text = "Lily saw a cat. Lily saw a dog. Lily saw a") =>
        HfTokenizer.FromDirectory(TestAssets.Stories260K).Encode(text, addSpecialTokens: true);

    private static GenerationOptions Greedy(int tokens) => new() { Temperature = 0, MaxNewTokens = tokens };

    private static GenerationResult Plain(CausalLanguageModel model, IReadOnlyList<int> prompt, GenerationOptions options) =>
        TokenGenerator.Generate(model, [prompt], options)[0];

    private static GenerationResult Speculative(CausalLanguageModel model, IReadOnlyList<int> prompt, GenerationOptions options, SpeculativeOptions speculative) =>
        TokenGenerator.Generate(model, [prompt], options with { Speculative = speculative })[0];

    [SharedAssetFact(Stories)]
    public void TheModelAsItsOwnDraftAcceptsEveryCandidateAndMatchesGreedy()
    {
        using var model = Load();
        using var draft = Load();
        var prompt = Prompt();
        var plain = Plain(model, prompt, Greedy(60));
        var fast = Speculative(model, prompt, Greedy(60), new SpeculativeOptions { DraftModel = draft, NumDraftTokens = 5, ConfidenceThreshold = 0 });
        Assert.Equal(plain.Tokens, fast.Tokens);
        Assert.Equal(plain.FinishReason, fast.FinishReason);
        var stats = fast.Speculation!;
        Assert.Equal(stats.Proposed, stats.Accepted);
        // All accepted every round, 5 candidates and the model's own token: 6 tokens a round, the last round what is left.
        Assert.Equal(60, plain.Tokens.Count);
        Assert.Equal((50, 10), (stats.Proposed, stats.Rounds));
    }

    [SharedAssetTheory(Stories)]
    [InlineData(4, true, 0.0)]
    [InlineData(6, false, 0.4)]
    [InlineData(20, false, 0.4)]
    public void APerturbedDraftIsPartlyRejectedAndStillMatchesGreedy(int draftTokens, bool heuristic, double confidence)
    {
        using var model = Load();
        using var draft = Load();
        Perturb(draft, 0.15, seed: 7);
        var prompt = Prompt("Once upon a time");
        var plain = Plain(model, prompt, Greedy(80));
        var fast = Speculative(model, prompt, Greedy(80),
            new SpeculativeOptions { DraftModel = draft, NumDraftTokens = draftTokens, HeuristicSchedule = heuristic, ConfidenceThreshold = confidence });
        Assert.Equal(plain.Tokens, fast.Tokens);
        var stats = fast.Speculation!;
        Assert.True(stats.Accepted > 0 && stats.Accepted < stats.Proposed, $"accepted {stats.Accepted} of {stats.Proposed}");
        // The rounds replayed without any cache: each round the draft greedily continues the sequence so far (a fresh
        // pass over it, so a draft cache holding rejected candidates would show), stopping after a pick it gives less
        // than the threshold; the longest prefix equal to greedy's tokens is accepted, and the count moves by +2 / −1
        // (heuristic) up to the CPU's 7, or stays.
        Assert.Equal(Replay(draft, prompt, plain.Tokens, 80, draftTokens, heuristic, confidence), (stats.Proposed, stats.Accepted, stats.Rounds));
    }

    private static (long Proposed, long Accepted, int Rounds) Replay(CausalLanguageModel draft, IReadOnlyList<int> prompt,
        IReadOnlyList<int> greedy, int maxNewTokens, int draftTokens, bool heuristic, double confidence)
    {
        const int cpuLimit = 7;
        draftTokens = Math.Min(draftTokens, cpuLimit);
        long proposed = 0, accepted = 0;
        var rounds = 0;
        var done = 0;
        while (done < greedy.Count)
        {
            rounds++;
            var k = Math.Min(draftTokens, maxNewTokens - done - 1);
            var sequence = prompt.Concat(greedy.Take(done)).ToList();
            var candidates = new List<int>();
            while (candidates.Count < k)
            {
                var probabilities = LastLogits(draft, [.. sequence, .. candidates]).softmax(-1);
                var token = (int)probabilities.argmax().item<long>();
                candidates.Add(token);
                if (probabilities[token].item<float>() < confidence) break;
            }
            var matched = 0;
            while (matched < candidates.Count && done + matched < greedy.Count && candidates[matched] == greedy[done + matched]) matched++;
            proposed += candidates.Count;
            accepted += matched;
            if (heuristic && candidates.Count > 0)
                draftTokens = matched == candidates.Count ? Math.Min(cpuLimit, draftTokens + 2) : Math.Max(1, draftTokens - 1);
            done += matched + 1;
        }
        return (proposed, accepted, rounds);
    }

    /// <summary>The model's logits after <paramref name="ids"/>, from one pass without a cache.</summary>
    internal static Tensor LastLogits(CausalLanguageModel model, IReadOnlyList<int> ids)
    {
        using var inference = inference_mode();
        var input = tensor(ids.Select(t => (long)t).ToArray()).view(1, -1);
        var ctx = new ForwardContext { PositionIds = arange(ids.Count, dtype: ScalarType.Int64).view(1, -1) };
        var hidden = model.DecodeHidden(model.EmbedTokens(input), ctx);
        return model.ComputeLogits(hidden.narrow(1, ids.Count - 1, 1)).view(-1).to(ScalarType.Float32);
    }

    [SharedAssetFact(Stories)]
    public void PromptLookupMatchesGreedy()
    {
        using var model = Load();
        var prompt = Prompt();
        var plain = Plain(model, prompt, Greedy(60));
        var fast = Speculative(model, prompt, Greedy(60), new SpeculativeOptions { PromptLookupTokens = 5 });
        Assert.Equal(plain.Tokens, fast.Tokens);
        Assert.True(fast.Speculation!.Proposed > 0);
        Assert.True(fast.Speculation.Accepted > 0);
    }

    [SharedAssetFact(Stories)]
    public void ALoraAdapterOnTheModelIsHonoured()
    {
        using var model = Load();
        new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = TargetModules.AllLinear }).Inject(model);
        using (no_grad())
        {
            using var generator = new Generator(11, CPU);
            foreach (var (name, p) in model.named_parameters())
                if (name.Contains("lora_B")) p.normal_(0, 0.05, generator);
        }
        model.eval();
        using var draft = Load();   // the base model without the adapter: a draft that is often right
        using var bare = Load();
        var prompt = Prompt("Once upon a time");
        var plain = Plain(model, prompt, Greedy(50));
        Assert.NotEqual(Plain(bare, prompt, Greedy(50)).Tokens, plain.Tokens);   // the adapter changes the text
        var fast = Speculative(model, prompt, Greedy(50), new SpeculativeOptions { DraftModel = draft, NumDraftTokens = 6 });
        Assert.Equal(plain.Tokens, fast.Tokens);
        var lookup = Speculative(model, prompt, Greedy(50), new SpeculativeOptions { PromptLookupTokens = 4 });
        Assert.Equal(plain.Tokens, lookup.Tokens);
    }

    [SharedAssetFact(Stories)]
    public void EndOfSequenceStopsWhereGreedyStopsEvenInsideAcceptedCandidates()
    {
        using var model = Load();
        using var draft = Load();
        var prompt = Prompt("Once upon a time");
        var free = Plain(model, prompt, Greedy(40)).Tokens;
        // End at the 9th token greedy writes: the draft proposes it (and more) in the middle of a round.
        var eos = free[8];
        var options = Greedy(40) with { EosTokenIds = [eos] };
        var plain = Plain(model, prompt, options);
        Assert.Equal(FinishReason.Eos, plain.FinishReason);
        foreach (var speculative in new[] { new SpeculativeOptions { DraftModel = draft, NumDraftTokens = 20 }, new SpeculativeOptions { PromptLookupTokens = 10 } })
        {
            var fast = Speculative(model, prompt, options, speculative);
            Assert.Equal(plain.Tokens, fast.Tokens);
            Assert.Equal(FinishReason.Eos, fast.FinishReason);
            Assert.Equal(eos, fast.Tokens[^1]);
        }
    }

    [SharedAssetTheory(Stories)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    public void MaxNewTokensIsNeverExceeded(int tokens)
    {
        using var model = Load();
        using var draft = Load();
        var prompt = Prompt();
        var plain = Plain(model, prompt, Greedy(tokens));
        var fast = Speculative(model, prompt, Greedy(tokens), new SpeculativeOptions { DraftModel = draft, NumDraftTokens = 20 });
        Assert.Equal(plain.Tokens, fast.Tokens);
        Assert.Equal(FinishReason.Length, fast.FinishReason);
        Assert.Equal(tokens, fast.Tokens.Count);
        Assert.Equal(plain.Tokens, Speculative(model, prompt, Greedy(tokens), new SpeculativeOptions { PromptLookupTokens = 20 }).Tokens);
    }

    [SharedAssetFact(Stories)]
    public void AStopCallbackEndsTheRowAtThatToken()
    {
        using var model = Load();
        using var draft = Load();
        var prompt = Prompt();
        var seen = new List<int>();
        var result = TokenGenerator.Generate(model, [prompt], Greedy(40) with { Speculative = new SpeculativeOptions { DraftModel = draft } },
            (_, token) => { seen.Add(token); return seen.Count < 5; })[0];
        Assert.Equal(FinishReason.Stop, result.FinishReason);
        Assert.Equal(5, result.Tokens.Count);
        Assert.Equal(seen, result.Tokens);
        Assert.Equal(Plain(model, prompt, Greedy(5)).Tokens, result.Tokens);
    }

    [SharedAssetFact(Stories)]
    public void TextGenerationStopsAtAStopStringAsPlainDecodingDoes()
    {
        using var model = Load();
        using var draft = Load();
        var generator = new TextGenerator(model, HfTokenizer.FromDirectory(TestAssets.Stories260K));
        const string prompt = "Lily saw a cat. Lily saw a";
        var free = generator.Generate([prompt], Greedy(60))[0].Text;
        var stop = free.Substring(free.Length / 2, 3);   // a piece from the middle of the text: it stops there
        var plain = generator.Generate([prompt], Greedy(60), [stop])[0];
        Assert.Equal(FinishReason.Stop, plain.FinishReason);
        foreach (var speculative in new[] { new SpeculativeOptions { DraftModel = draft }, new SpeculativeOptions { PromptLookupTokens = 6 } })
        {
            var streamed = new System.Text.StringBuilder();
            var fast = generator.Generate([prompt], Greedy(60) with { Speculative = speculative }, [stop], (_, piece) => streamed.Append(piece))[0];
            Assert.Equal(plain.Text, fast.Text);
            Assert.Equal(plain.Tokens, fast.Tokens);
            Assert.Equal(FinishReason.Stop, fast.FinishReason);
            Assert.Equal(plain.Text, streamed.ToString());
            Assert.NotNull(fast.Speculation);
        }
    }

    [SharedAssetFact(Stories)]
    public void SamplingWithADraftIsReproducibleAndHonoursTheLimit()
    {
        using var model = Load();
        using var draft = Load();
        Perturb(draft, 0.1, seed: 3);
        var prompt = Prompt("Once upon a time");
        // No end-of-sequence token: every run writes exactly 30.
        var options = new GenerationOptions { Temperature = 0.8, TopK = 40, TopP = 0.95, Seed = 5, MaxNewTokens = 30, EosTokenIds = [] }
            with { Speculative = new SpeculativeOptions { DraftModel = draft, NumDraftTokens = 4 } };
        var first = TokenGenerator.Generate(model, [prompt], options)[0];
        var second = TokenGenerator.Generate(model, [prompt], options)[0];
        Assert.Equal(first.Tokens, second.Tokens);
        Assert.NotEqual(first.Tokens, TokenGenerator.Generate(model, [prompt], options with { Seed = 6 })[0].Tokens);   // the seed matters
        Assert.Equal(30, first.Tokens.Count);
        Assert.Equal(FinishReason.Length, first.FinishReason);
        Assert.True(first.Speculation!.Accepted > 0);
        var lookup = TokenGenerator.Generate(model, [prompt], options with { Speculative = new SpeculativeOptions { PromptLookupTokens = 3 } })[0];
        Assert.Equal(30, lookup.Tokens.Count);
        // The model as its own draft: p and q are the same processed distribution (temperature, top-k, top-p applied to
        // both), so min(1, p/q) is 1 up to rounding and virtually every candidate is accepted.
        using var same = Load();
        var self = TokenGenerator.Generate(model, [prompt], options with
        {
            Speculative = new SpeculativeOptions { DraftModel = same, NumDraftTokens = 4, ConfidenceThreshold = 0 },
        })[0];
        Assert.True(self.Speculation!.AcceptanceRate >= 0.95, $"accepted {self.Speculation.Accepted} of {self.Speculation.Proposed}");
        Assert.Equal(30, self.Tokens.Count);
    }

    [SharedAssetFact(Stories)]
    public void SettingsItCannotHonourAreRefused()
    {
        using var model = Load();
        var prompt = Prompt();
        var small = ModelFactory.Create(ModelConfig.FromJson(TestModels.LlamaConfigJson(vocab: 96)), ScalarType.Float32);
        var error = Assert.Throws<ArgumentException>(() => Speculative(model, prompt, Greedy(4), new SpeculativeOptions { DraftModel = small }));
        Assert.Contains("96", error.Message);
        Assert.Contains("512", error.Message);
        Assert.Contains("not both", Assert.Throws<ArgumentException>(() =>
            Speculative(model, prompt, Greedy(4), new SpeculativeOptions { DraftModel = small, PromptLookupTokens = 3 })).Message);
        Assert.Contains("assistant_confidence_threshold", Assert.Throws<ArgumentException>(() =>
            Speculative(model, prompt, Greedy(4), new SpeculativeOptions { DraftModel = model, ConfidenceThreshold = 1 })).Message);
        // Dynamic-NTK RoPE past max_position_embeddings (128): refused; within it, decoded as greedy.
        using var dynamic = ModelFactory.Create(ModelConfig.FromJson(TestModels.LlamaConfigJson(
            ropeScaling: new System.Text.Json.Nodes.JsonObject { ["type"] = "dynamic", ["factor"] = 2.0 })), ScalarType.Float32);
        var ids = Enumerable.Range(3, 90).ToArray();
        var refusal = Assert.Throws<ArgumentException>(() =>
            Speculative(dynamic, ids, Greedy(40), new SpeculativeOptions { PromptLookupTokens = 3 })).Message;
        Assert.Contains("dynamic", refusal);
        Assert.Contains("128", refusal);
        Assert.Equal(Plain(dynamic, ids, Greedy(20)).Tokens, Speculative(dynamic, ids, Greedy(20), new SpeculativeOptions { PromptLookupTokens = 3 }).Tokens);
        Assert.Contains("num_assistant_tokens", Assert.Throws<ArgumentException>(() =>
            Speculative(model, prompt, Greedy(4), new SpeculativeOptions { DraftModel = model, NumDraftTokens = 0 })).Message);
    }

    /// <summary>Adds seeded Gaussian noise of <paramref name="scale"/> to every weight.</summary>
    private static void Perturb(CausalLanguageModel model, double scale, long seed)
    {
        using var noGrad = no_grad();
        using var generator = new Generator((ulong)seed, CPU);
        foreach (var (_, p) in model.named_parameters())
            p.add_(randn(p.shape, generator: generator) * scale * p.std());
    }
}
