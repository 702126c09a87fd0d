using System.Diagnostics;
using SharpTune.Generation;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// The decode fast path against the general path on the same model and prompts, interleaved run by run so a busy
/// machine slows both alike: median ms per decode step of each, and their ratio. A relative check, not a figure for
/// the tables (those come from <c>generation</c>, run alone). With <c>modules</c> as the baseline, the fast path is
/// compared with itself minus the whole-stack pass (<see cref="DecodeLayerStack"/>): each layer through its modules.
/// </summary>
internal static class DecodePathBench
{
    public static void Run(string configOrDir, string dtypeName, int batch, int newTokens, int rounds, string baseline = "general")
    {
        var dtype = ModelFactory.ParseDtype(dtypeName);
        manual_seed(0);
        using var model = Directory.Exists(configOrDir) ? PretrainedModel.Load(configOrDir, dtype) : ModelFactory.Create(BenchModels.Config(configOrDir), dtype);
        model.eval();
        var random = new Random(1);
        var prompts = Enumerable.Range(0, batch)
            .Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, 32).Select(_ => random.Next(3, model.Config.VocabSize)).ToArray()).ToArray();
        var greedy = new GenerationOptions { Temperature = 0, EosTokenIds = [] };
        double StepMs(bool fast)
        {
            using var general = fast ? null : baseline == "modules" ? InferenceShortcuts.DisableLayerStack() : InferenceShortcuts.Disable();
            var prefill = Stopwatch.StartNew();
            TokenGenerator.Generate(model, prompts, greedy with { MaxNewTokens = 1 });
            var prefillSeconds = prefill.Elapsed.TotalSeconds;
            var full = Stopwatch.StartNew();
            TokenGenerator.Generate(model, prompts, greedy with { MaxNewTokens = newTokens + 1 });
            return Math.Max(0, full.Elapsed.TotalSeconds - prefillSeconds) / newTokens * 1000;
        }
        StepMs(true);
        StepMs(false);   // warm-up of both
        var fastMs = new List<double>();
        var generalMs = new List<double>();
        for (var i = 0; i < rounds; i++)
        {
            fastMs.Add(StepMs(true));
            generalMs.Add(StepMs(false));
        }
        double Median(List<double> xs) => xs.Order().ElementAt(xs.Count / 2);
        var name = Directory.Exists(configOrDir) ? Path.GetFileName(Path.TrimEndingDirectorySeparator(configOrDir)) : configOrDir;
        Console.WriteLine($"{name} {dtypeName} batch {batch}: fast {Median(fastMs):F3} ms/step, {baseline} {Median(generalMs):F3} ms/step, " +
                          $"speed-up {Median(generalMs) / Median(fastMs):F2}x (median of {rounds} interleaved runs, {newTokens} steps each)");
    }
}
