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

    private sealed record Case(int[] InputIds, float[] LastLogits, int[] GreedyIds);

    private static Case[] Cases(string name) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Folder(name), "EXPECTED.json"))).RootElement.GetProperty("prompts")
            .EnumerateArray().Select(p => new Case(
                p.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                p.GetProperty("last_logits").EnumerateArray().Select(e => e.GetSingle()).ToArray(),
                p.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray())).ToArray();

    [SharedAssetTheory("models/reference-archs")]
    [InlineData("qwen3_tied", "Qwen3ForCausalLM")]
    [InlineData("gemma3_pattern", "Gemma3ForCausalLM")]
    [InlineData("phi3_mini", "Phi3ForCausalLM")]
    public void LastPositionLogitsMatchTransformers(string name, string architecture)
    {
        using var model = PretrainedModel.Load(Folder(name), ScalarType.Float32);
        Assert.Equal(architecture, model.GetType().Name);
        using var noGrad = no_grad();
        foreach (var c in Cases(name))
        {
            using var ids = tensor(c.InputIds.Select(i => (long)i).ToArray()).unsqueeze(0);
            using var logits = model.Forward(ids);
            using var last = logits[0, -1];
            using var expected = tensor(c.LastLogits);
            var worst = (last - expected).abs().max().item<float>();
            Assert.True(worst <= 1e-4, $"{name}, prompt of {c.InputIds.Length}: last-position logits differ by up to {worst}");
        }
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
