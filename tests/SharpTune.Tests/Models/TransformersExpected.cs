using System.Text.Json;
using SharpTune.Generation;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// A checkpoint folder's EXPECTED.json as the float64 port of transformers' eager forward writes it (per prompt: input
/// ids, the whole vocabulary's logits at the last position, greedy ids and, where the script wrote them, the logits of
/// every cached step along the greedy continuation), and the comparisons such folders get.
/// </summary>
internal static class TransformersExpected
{
    /// <summary>One prompt; <see cref="StepLogits"/> row 0 is the prefill's last position, row i the i-th decode step's.</summary>
    public sealed record Case(int[] InputIds, float[] LastLogits, int[] GreedyIds, float[][]? StepLogits);

    public static Case[] Read(string folder) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "EXPECTED.json"))).RootElement.GetProperty("prompts")
            .EnumerateArray().Select(p => new Case(
                p.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                p.GetProperty("last_logits").EnumerateArray().Select(e => e.GetSingle()).ToArray(),
                p.GetProperty("greedy_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                p.TryGetProperty("step_logits", out var steps)
                    ? steps.EnumerateArray().Select(row => row.EnumerateArray().Select(e => e.GetSingle()).ToArray()).ToArray()
                    : null)).ToArray();

    /// <summary>The checkpoint in <paramref name="folder"/> loaded in float32 and in eval mode, as the comparisons here want it.</summary>
    public static CausalLanguageModel LoadForComparison(string folder)
    {
        var model = PretrainedModel.Load(folder, ScalarType.Float32);
        model.eval();
        return model;
    }

    /// <summary>
    /// Every prompt's last-position logits within <paramref name="tolerance"/> of transformers' (a float32 forward agrees
    /// to ~1e-5; 1e-4 leaves room for wider models).
    /// </summary>
    public static void AssertLastPositionLogits(CausalLanguageModel model, string folder, string label, double tolerance = 1e-4)
    {
        using var noGrad = no_grad();
        foreach (var c in Read(folder))
        {
            using var ids = tensor(c.InputIds.Select(i => (long)i).ToArray()).unsqueeze(0);
            using var logits = model.Forward(ids);
            using var last = logits[0, -1];
            using var expected = tensor(c.LastLogits);
            var worst = (last - expected).abs().max().item<float>();
            Assert.True(worst <= tolerance, $"{label}, prompt of {c.InputIds.Length}: last-position logits differ by up to {worst}");
        }
    }

    /// <summary>
    /// Every prompt's greedy ids as the reference's, with the cache (the fast single-query decode and, with the shortcuts
    /// off, the general path) and without it.
    /// </summary>
    public static void AssertGreedyIdsOnTheFastAndGeneralPaths(CausalLanguageModel model, string folder)
    {
        foreach (var c in Read(folder))
        {
            var options = new GenerationOptions { MaxNewTokens = c.GreedyIds.Length, Temperature = 0, EosTokenIds = [] };
            Assert.Equal(c.GreedyIds, TokenGenerator.Generate(model, [c.InputIds], options)[0].Tokens);
            Assert.Equal(c.GreedyIds, TokenGenerator.Generate(model, [c.InputIds], options, useCache: false)[0].Tokens);
            using (InferenceShortcuts.Disable())
                Assert.Equal(c.GreedyIds, TokenGenerator.Generate(model, [c.InputIds], options)[0].Tokens);
        }
    }

    /// <summary>
    /// Every cached step — the prompt's prefill, then one token at a time along the reference's greedy continuation —
    /// gives the reference's logits at that position (step_logits) within <paramref name="tolerance"/>, with the decode
    /// shortcuts on and off. MaxPosition is passed as the generator passes it, so RoPE takes each step's angles from its
    /// step tables.
    /// </summary>
    public static void AssertEveryCachedDecodeStep(CausalLanguageModel model, string folder, string label, double tolerance)
    {
        using var noGrad = no_grad();
        var cases = Read(folder);
        foreach (var shortcuts in new[] { true, false })
        foreach (var c in cases)
        {
            using var off = shortcuts ? null : InferenceShortcuts.Disable();
            var prompt = c.InputIds.Select(i => (long)i).ToArray();
            var greedy = c.GreedyIds.Select(i => (long)i).ToArray();
            var steps = c.StepLogits ?? throw new InvalidDataException($"{folder}/EXPECTED.json: prompt of {prompt.Length} has no step_logits");
            using var cache = new KvCache(model.Config, 1, prompt.Length + greedy.Length, ScalarType.Float32, CPU);
            using var prefill = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(tensor(prompt).unsqueeze(0)),
                new ForwardContext { PositionIds = arange((long)prompt.Length).unsqueeze(0), Cache = cache, MaxPosition = prompt.Length - 1 }));
            AssertClose(prefill[0, -1], steps[0], $"{label}, prompt of {prompt.Length}, prefill");
            for (var step = 1; step < steps.Length; step++)
            {
                var position = prompt.Length + step - 1;
                using var logits = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(tensor(new[,] { { greedy[step - 1] } })),
                    new ForwardContext { PositionIds = tensor(new long[,] { { position } }), Cache = cache, MaxPosition = position }));
                AssertClose(logits[0, 0], steps[step], $"{label}, prompt of {prompt.Length}, decode step {step} (shortcuts {(shortcuts ? "on" : "off")})");
            }
        }

        void AssertClose(Tensor actual, float[] expected, string what)
        {
            using var reference = tensor(expected);
            var worst = (actual - reference).abs().max().item<float>();
            Assert.True(worst <= tolerance, $"{what}: logits differ by up to {worst}");
        }
    }
}
