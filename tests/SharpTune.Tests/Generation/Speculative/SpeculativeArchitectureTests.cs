using SharpTune.Generation;
using SharpTune.Generation.Speculative;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Generation.Speculative;

/// <summary>
/// Greedy speculative decoding equals plain greedy decoding on every attention path the verification pass takes:
/// sliding windows shorter than the sequence (Mistral, Qwen2's per-layer window, Gemma 3's local/global layers), Gemma
/// 2's soft-capped windowed attention, GPT-2's learned positions, grouped-query attention (every Llama-style kind here
/// has 4 query and 2 key/value heads), mixture-of-experts layers.
/// </summary>
public sealed class SpeculativeArchitectureTests
{
    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    [InlineData("mistral-window")]
    [InlineData("qwen2-window")]
    [InlineData("gemma2")]
    [InlineData("gemma3")]
    [InlineData("qwen3moe")]
    public void GreedySpeculativeDecodingEqualsGreedy(string kind)
    {
        using var model = TestModels.Create(kind);
        using var draft = TestModels.Create(kind);
        model.eval();
        draft.eval();
        Perturb(draft, 0.3, seed: 5);
        var random = new Random(3);
        var prompt = Enumerable.Range(0, 9).Select(_ => random.Next(3, 96)).ToArray();
        var greedy = new GenerationOptions { Temperature = 0, MaxNewTokens = 40, EosTokenIds = [] };
        var plain = TokenGenerator.Generate(model, [prompt], greedy)[0];
        foreach (var speculative in new[]
        {
            new SpeculativeOptions { DraftModel = draft, NumDraftTokens = 5, ConfidenceThreshold = 0 },
            new SpeculativeOptions { DraftModel = model, NumDraftTokens = 7, ConfidenceThreshold = 0 },
            new SpeculativeOptions { PromptLookupTokens = 6, MaxMatchingNgramSize = 1 },
        })
        {
            var fast = TokenGenerator.Generate(model, [prompt], greedy with { Speculative = speculative })[0];
            Assert.Equal(plain.Tokens, fast.Tokens);
            Assert.True(fast.Speculation!.Proposed > 0);
            if (speculative.DraftModel == model) Assert.Equal(fast.Speculation.Proposed, fast.Speculation.Accepted);
        }
    }

    /// <summary>Adds seeded Gaussian noise of <paramref name="scale"/> (relative to each weight's spread) to every weight.</summary>
    internal static void Perturb(CausalLanguageModel model, double scale, long seed)
    {
        using var noGrad = no_grad();
        using var generator = new Generator((ulong)seed, CPU);
        foreach (var (_, p) in model.named_parameters())
            if (p.numel() > 1) p.add_(randn(p.shape, generator: generator) * scale * p.std());
    }
}
