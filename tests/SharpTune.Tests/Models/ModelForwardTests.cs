using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

public class ModelForwardTests
{
    [Theory]
    [MemberData(nameof(TestModels.Kinds), MemberType = typeof(TestModels))]
    public void IncrementalDecodingWithCacheEqualsFullForward(string kind)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        using var noGrad = no_grad();
        var ids = tensor(new long[,] { { 1, 5, 9, 33, 7, 21, 60, 3 } });
        using var full = model.Forward(ids);                                              // (1, 8, V)

        using var cache = new KvCache(model.Config, 1, 8, ScalarType.Float32, CPU);
        var prefix = ids.narrow(1, 0, 5);
        using var first = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(prefix),
            new ForwardContext { PositionIds = arange(5L).unsqueeze(0), Cache = cache }));
        Assert.True(first.allclose(full.narrow(1, 0, 5), rtol: 0, atol: 1e-5));
        for (var t = 5; t < 8; t++)
        {
            using var step = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(ids.narrow(1, t, 1)),
                new ForwardContext { PositionIds = tensor(new long[,] { { t } }), Cache = cache }));
            Assert.True(step.allclose(full.narrow(1, t, 1), rtol: 0, atol: 1e-5), $"position {t} differs by {(step - full.narrow(1, t, 1)).abs().max().item<float>()}, max logit {full.abs().max().item<float>()}");
        }
    }

    [Theory]
    [MemberData(nameof(TestModels.KindsWithoutTiedLlama), MemberType = typeof(TestModels))]
    public void GreedyGenerationIsTheSameWithAndWithoutCacheAndInABatch(string kind)
    {
        using var model = TestModels.Create(kind);
        model.eval();
        int[][] prompts = [[1, 5, 9, 33], [1, 70], [1, 4, 4, 4, 8, 12, 40]];
        var options = new GenerationOptions { MaxNewTokens = 12, Temperature = 0, EosTokenIds = [] };
        var single = prompts.Select(p => TokenGenerator.Generate(model, [p], options)[0].Tokens).ToArray();
        var noCache = prompts.Select(p => TokenGenerator.Generate(model, [p], options, useCache: false)[0].Tokens).ToArray();
        var batched = TokenGenerator.Generate(model, prompts, options).Select(r => r.Tokens).ToArray();
        for (var i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(12, single[i].Count);
            Assert.Equal(single[i], noCache[i]);
            Assert.Equal(single[i], batched[i]);
        }
    }

    [Fact]
    public void PaddedBatchLogitsEqualUnpaddedLogits()
    {
        using var model = TestModels.Create("llama");
        model.eval();
        using var noGrad = no_grad();
        using var alone = model.Forward(tensor(new long[,] { { 1, 7, 8, 9 } }));
        var isReal = tensor(new[,] { { false, false, true, true, true, true } });
        var ctx = new ForwardContext
        {
            PositionIds = tensor(new long[,] { { 0, 0, 0, 1, 2, 3 } }),
            AttentionMask = AttentionMasks.CausalWithPadding(isReal, 6),
        };
        using var padded = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(tensor(new long[,] { { 0, 0, 1, 7, 8, 9 } })), ctx));
        Assert.True(padded.narrow(1, 2, 4).allclose(alone, rtol: 0, atol: 1e-5));
    }

    [Fact]
    public void PackedSequencesDoNotAttendAcrossExamples()
    {
        using var model = TestModels.Create("llama");
        model.eval();
        using var noGrad = no_grad();
        using var a = model.Forward(tensor(new long[,] { { 1, 7, 8 } }));
        using var b = model.Forward(tensor(new long[,] { { 1, 30, 31, 32 } }));
        var segments = tensor(new long[,] { { 0, 0, 0, 1, 1, 1, 1 } });
        var ctx = new ForwardContext
        {
            PositionIds = AttentionMasks.PackedPositions(segments),
            AttentionMask = AttentionMasks.PackedCausal(segments),
        };
        using var packed = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(tensor(new long[,] { { 1, 7, 8, 1, 30, 31, 32 } })), ctx));
        Assert.True(packed.narrow(1, 0, 3).allclose(a, rtol: 0, atol: 1e-5));
        Assert.True(packed.narrow(1, 3, 4).allclose(b, rtol: 0, atol: 1e-5));
    }

    [Fact]
    public void ContextOverflowIsAClearErrorUnlessTruncationWasAsked()
    {
        using var model = TestModels.Create("llama");
        var prompt = Enumerable.Range(0, 120).Select(i => 3 + i % 50).ToArray();
        var error = Assert.Throws<ContextLengthException>(() =>
            TokenGenerator.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = 10, Temperature = 0 }));
        Assert.Contains("120 tokens", error.Message);
        Assert.Contains("128", error.Message);
        var truncated = TokenGenerator.Generate(model, [prompt],
            new GenerationOptions { MaxNewTokens = 10, Temperature = 0, EosTokenIds = [], Overflow = ContextOverflow.TruncatePromptLeft })[0];
        Assert.Equal(118, truncated.PromptIds.Count);
        Assert.Equal(10, truncated.Tokens.Count);
    }

    [Fact]
    public void SeededSamplingIsReproducibleAndTopKOneIsGreedy()
    {
        using var model = TestModels.Create("llama");
        model.eval();
        int[] prompt = [1, 5, 9];
        var sampled = new GenerationOptions { MaxNewTokens = 10, Temperature = 1.3, TopP = 0.9, Seed = 7, EosTokenIds = [] };
        var first = TokenGenerator.Generate(model, [prompt], sampled)[0].Tokens;
        var second = TokenGenerator.Generate(model, [prompt], sampled)[0].Tokens;
        Assert.Equal(first, second);
        var greedy = TokenGenerator.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = 10, Temperature = 0, EosTokenIds = [] })[0].Tokens;
        var topK1 = TokenGenerator.Generate(model, [prompt], sampled with { TopK = 1, TopP = 1.0 })[0].Tokens;
        Assert.Equal(greedy, topK1);
    }

    [Fact]
    public void UnknownArchitectureIsAClearError()
    {
        var json = TestModels.LlamaConfigJson(architecture: "FalconForCausalLM");
        var config = ModelConfig.FromJson(json);
        var error = Assert.Throws<NotSupportedException>(() => ModelFactory.Create(config));
        Assert.Contains("FalconForCausalLM", error.Message);
        Assert.Contains("LlamaForCausalLM", error.Message);
    }
}
