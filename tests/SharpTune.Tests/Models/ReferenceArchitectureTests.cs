using System.Text.Json;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tests.Support;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// ../shared/models/reference-archs: one tiny checkpoint per new family with logits and greedy ids from a float64 port
/// of transformers' eager forward. Prompts of 5, 17 and 40 tokens; the longest runs past the sliding windows.
/// </summary>
public class ReferenceArchitectureTests
{
    private static string Folder(string name) => Path.Combine(TestAssets.SharedDir, "models", "reference-archs", name);

    private static TransformersExpected.Case[] Cases(string name) => TransformersExpected.Read(Folder(name));

    [SharedAssetTheory("models/reference-archs")]
    [InlineData("qwen3_tied", "Qwen3ForCausalLM")]
    [InlineData("gemma3_pattern", "Gemma3ForCausalLM")]
    [InlineData("phi3_mini", "Phi3ForCausalLM")]
    public void LastPositionLogitsMatchTransformers(string name, string architecture)
    {
        using var model = PretrainedModel.Load(Folder(name), ScalarType.Float32);
        Assert.Equal(architecture, model.GetType().Name);
        TransformersExpected.AssertLastPositionLogits(model, Folder(name), name);
    }

    [SharedAssetTheory("models/reference-archs")]
    [InlineData("qwen3_tied")]
    [InlineData("gemma3_pattern")]
    [InlineData("phi3_mini")]
    public void GreedyIdsMatchWithAndWithoutCacheAndInAPaddedBatch(string name)
    {
        using var model = PretrainedModel.Load(Folder(name), ScalarType.Float32);
        var cases = Cases(name);
        foreach (var useCache in new[] { true, false })
            foreach (var c in cases)
            {
                var options = new GenerationOptions { MaxNewTokens = c.GreedyIds.Length, Temperature = 0, EosTokenIds = [] };
                var produced = TokenGenerator.Generate(model, [c.InputIds], options, useCache: useCache)[0].Tokens;
                Assert.Equal(c.GreedyIds, produced);
            }
        // Prompts of 5, 17 and 40 tokens in one left-padded batch: each row as it decodes alone.
        var batched = TokenGenerator.Generate(model, cases.Select(c => (IReadOnlyList<int>)c.InputIds).ToArray(),
            new GenerationOptions { MaxNewTokens = cases.Max(c => c.GreedyIds.Length), Temperature = 0, EosTokenIds = [] });
        for (var i = 0; i < cases.Length; i++)
            Assert.Equal(cases[i].GreedyIds, batched[i].Tokens);
    }
}
