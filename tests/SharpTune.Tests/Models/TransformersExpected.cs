using System.Text.Json;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// A checkpoint folder's EXPECTED.json as the float64 port of transformers' eager forward writes it (per prompt: input
/// ids, the whole vocabulary's logits at the last position, greedy ids), and the comparison every such folder gets.
/// </summary>
internal static class TransformersExpected
{
    public sealed record Case(int[] InputIds, float[] LastLogits, int[] GreedyIds);

    public static Case[] Read(string folder) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "EXPECTED.json"))).RootElement.GetProperty("prompts")
            .EnumerateArray().Select(p => new Case(
                p.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                p.GetProperty("last_logits").EnumerateArray().Select(e => e.GetSingle()).ToArray(),
                p.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray())).ToArray();

    /// <summary>Every prompt's last-position logits within 1e-4 of transformers' (a float32 forward agrees to ~1e-5).</summary>
    public static void AssertLastPositionLogits(CausalLanguageModel model, string folder, string label)
    {
        using var noGrad = no_grad();
        foreach (var c in Read(folder))
        {
            using var ids = tensor(c.InputIds.Select(i => (long)i).ToArray()).unsqueeze(0);
            using var logits = model.Forward(ids);
            using var last = logits[0, -1];
            using var expected = tensor(c.LastLogits);
            var worst = (last - expected).abs().max().item<float>();
            Assert.True(worst <= 1e-4, $"{label}, prompt of {c.InputIds.Length}: last-position logits differ by up to {worst}");
        }
    }
}
