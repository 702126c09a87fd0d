using System.Text.Json.Nodes;
using SharpTune.Export.Gguf;
using SharpTune.Models;
using SharpTune.Tests.Models;
using SharpTune.Tests.Support;
using static SharpTune.Tests.Export.GgufModelFolders;
using static SharpTune.Tests.Export.GgufTestSupport;

namespace SharpTune.Tests.Export;

/// <summary>
/// The llama.cpp round trips a reference fixture of Models/Fixtures (config, weights and the float64 reference's
/// EXPECTED.json) gets once its family exports to GGUF: the exported files' next-token log-probabilities and greedy
/// tokens against the reference's, and a LoRA adapter applied by llama.cpp against SharpTune's merged model. Each family's
/// tests give their own tolerances (what llama.cpp's kernels cost on that family, measured) and their file checks.
/// </summary>
internal static class LlamaCppFixtureChecks
{
    /// <summary>Greedy tokens compared after the longest prompt (the f16 and LoRA comparisons).</summary>
    private const int GreedyTokens = 24;

    public sealed record ExportedFiles(string F32, string F16, string Q8_0);

    /// <summary>The fixture copy in <paramref name="folder"/> exported as f32, f16 and q8_0 (the last holding q8_0 tensors).</summary>
    public static ExportedFiles ExportF32F16AndQ8_0(TempDir dir, string folder, string name)
    {
        var f32 = ExportModel(folder, Path.Combine(dir.Path, name + "-f32.gguf"), GgufExportType.F32).Path;
        var f16 = ExportModel(folder, Path.Combine(dir.Path, name + "-f16.gguf"), GgufExportType.F16).Path;
        var q8 = ExportModel(folder, Path.Combine(dir.Path, name + "-q8_0.gguf"), GgufExportType.Q8_0).Path;
        Assert.Contains(GgmlType.Q8_0, GgufReader.Open(q8).Tensors.Select(t => t.Type));
        return new ExportedFiles(f32, f16, q8);
    }

    /// <summary>
    /// Queues, for every prompt of the fixture's EXPECTED.json, llama.cpp on the f32 file (log-probabilities within
    /// <paramref name="logProbabilityTolerance"/> of the reference's, the same greedy tokens) and on the q8_0 file
    /// (log-probabilities within <paramref name="q8LogProbabilityTolerance"/>, at least three quarters of the greedy
    /// tokens); then the f16 file's greedy tokens after the last prompt against SharpTune's model with its matrices rounded
    /// through f16 (unless <paramref name="compareF16Greedy"/> is false: where the file keeps packed weights, such as
    /// MXFP4 experts, whose llama.cpp kernels round the activations to 8 bits). <paramref name="reference"/> names the
    /// reference in failure messages ("transformers'"). A prompt whose reference logits lead the runner-up by less than
    /// <paramref name="q8GreedyMinimumLead"/> gets no q8_0 greedy comparison: 8-bit rounding decides such a near tie.
    /// </summary>
    public static void QueueReferenceComparisons(List<(JsonObject Job, Action<JsonObject> Check)> items, string name, string folder,
        ExportedFiles files, double logProbabilityTolerance, double q8LogProbabilityTolerance, string reference, bool compareF16Greedy = true,
        double q8GreedyMinimumLead = 0)
    {
        var cases = TransformersExpected.Read(folder);
        foreach (var c in cases)
        {
            var what = $"{name}, prompt of {c.InputIds.Length}";
            var expected = LogSoftmax(c.LastLogits.Select(l => (double)l).ToArray());
            items.Add((Float32(LlamaCppRuntime.Distribution(files.F32, c.InputIds)), result =>
            {
                var difference = MaxLogProbabilityDifference(expected, LlamaCppRuntime.Probabilities(result, expected.Length));
                Assert.True(difference < logProbabilityTolerance, $"{what} f32: llama.cpp's log-probabilities differ from {reference} by up to {difference:G3}");
            }));
            items.Add((Float32(LlamaCppRuntime.Greedy(files.F32, c.InputIds, c.GreedyIds.Length)),
                result => AssertSameIds($"{what} f32", c.GreedyIds, Ids(result, "greedy"))));
            items.Add((Float32(LlamaCppRuntime.Distribution(files.Q8_0, c.InputIds)), result =>
            {
                var difference = MaxLogProbabilityDifference(expected, LlamaCppRuntime.Probabilities(result, expected.Length));
                Assert.True(difference < q8LogProbabilityTolerance, $"{what} q8_0: llama.cpp's log-probabilities differ from {reference} by up to {difference:G3}");
            }));
            var lead = c.LastLogits.OrderDescending().Take(2).Aggregate((first, second) => first - second);
            if (lead < q8GreedyMinimumLead) continue;
            items.Add((Float32(LlamaCppRuntime.Greedy(files.Q8_0, c.InputIds, c.GreedyIds.Length)), result =>
            {
                var agreeing = c.GreedyIds.Zip(Ids(result, "greedy")).Count(p => p.First == p.Second);
                Assert.True(agreeing >= 0.75 * c.GreedyIds.Length, $"{what} q8_0: {agreeing} of {c.GreedyIds.Length} greedy tokens agree with {reference}");
            }));
        }
        if (!compareF16Greedy) return;
        var prompt = cases[^1].InputIds;
        using var model = PretrainedModel.Load(folder, TorchSharp.torch.ScalarType.Float32);
        RoundMatricesToF16(model);
        var expectedF16 = Greedy(model, prompt, GreedyTokens);
        items.Add((Float32(LlamaCppRuntime.Greedy(files.F16, prompt, GreedyTokens)), result => AssertSameIds($"{name} f16", expectedF16, Ids(result, "greedy"))));
    }

    /// <summary>
    /// A LoRA adapter on every linear layer of the fixture copy in <paramref name="folder"/> (B drawn from
    /// <paramref name="seed"/>), exported with gguf-lora: queues llama.cpp applying it to the f32 base, and the base
    /// exported with the adapter merged in (<c>export gguf --adapter</c>), each against SharpTune's model with the adapter
    /// merged, greedily after the last prompt. Returns the LoRA GGUF's export report for the family's own checks.
    /// </summary>
    public static GgufExportReport QueueLoraComparisons(List<(JsonObject Job, Action<JsonObject> Check)> items, TempDir dir, string name,
        string folder, long seed)
    {
        var prompt = TransformersExpected.Read(folder)[^1].InputIds;
        var adapterDir = Path.Combine(dir.Path, name + "-lora");
        var expected = SaveRandomLoraAndGreedyOfMerged(folder, adapterDir, prompt, GreedyTokens, seed, bScale: 0.5);
        var basePath = ExportModel(folder, Path.Combine(dir.Path, name + "-base.gguf"), GgufExportType.F32).Path;
        var lora = GgufLoraExporter.Export(new GgufLoraExportOptions
        {
            AdapterDir = adapterDir, ModelDir = folder, OutputPath = Path.Combine(dir.Path, name + "-lora.gguf"),
        });
        items.Add((Float32(LlamaCppRuntime.Greedy(basePath, prompt, GreedyTokens, lora.Path)),
            result => AssertSameIds($"{name} base + LoRA GGUF", expected, Ids(result, "greedy"))));
        var mergedPath = ExportModel(folder, Path.Combine(dir.Path, name + "-merged.gguf"), GgufExportType.F32, adapterDir).Path;
        items.Add((Float32(LlamaCppRuntime.Greedy(mergedPath, prompt, GreedyTokens)),
            result => AssertSameIds($"{name} merged export", expected, Ids(result, "greedy"))));
        return lora;
    }

    /// <summary>
    /// For each fixture of Models/Fixtures: a copy exported as f32, f16 and q8_0 (<paramref name="checkFiles"/>, if given,
    /// sees the files), its <see cref="QueueReferenceComparisons"/>, then all of them run by llama.cpp.
    /// </summary>
    public static void RunReferenceComparisons(IEnumerable<string> fixtures, double logProbabilityTolerance, double q8LogProbabilityTolerance,
        string reference, Action<ExportedFiles>? checkFiles = null, bool compareF16Greedy = true)
    {
        using var dir = new TempDir();
        var items = new List<(JsonObject Job, Action<JsonObject> Check)>();
        foreach (var name in fixtures)
        {
            var folder = FixtureCopy(dir, TestAssets.ModelFixture(name));
            var files = ExportF32F16AndQ8_0(dir, folder, name);
            checkFiles?.Invoke(files);
            QueueReferenceComparisons(items, name, folder, files, logProbabilityTolerance, q8LogProbabilityTolerance, reference, compareF16Greedy);
        }
        RunAll(items);
    }

    /// <summary>
    /// For each fixture of Models/Fixtures: <see cref="QueueLoraComparisons"/> on a copy of it (<paramref name="checkAdapter"/>
    /// sees the copy's folder and the LoRA GGUF's export report), then all of them run by llama.cpp.
    /// </summary>
    public static void RunLoraComparisons(IEnumerable<string> fixtures, long seed, Action<string, GgufExportReport> checkAdapter)
    {
        using var dir = new TempDir();
        var items = new List<(JsonObject Job, Action<JsonObject> Check)>();
        foreach (var name in fixtures)
        {
            var folder = FixtureCopy(dir, TestAssets.ModelFixture(name));
            checkAdapter(folder, QueueLoraComparisons(items, dir, name, folder, seed));
        }
        RunAll(items);
    }
}
