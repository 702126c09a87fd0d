using System.Diagnostics;
using SharpTune.Generation;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>Prefill and decode throughput with the KV cache, batch 1 and 8, and the per-step overhead.</summary>
internal static class GenerationBench
{
    /// <param name="quantize">
    /// nf4|fp4|int8: load the base quantized (from a checkpoint written by a child process for S/M); with "+head"
    /// (e.g. int8+head) the output head is quantized too, as llama.cpp's quantized files store it.
    /// </param>
    public static void Run(string configOrDir, string dtypeName, int batch, int promptLength, int newTokens, string? quantize = null)
    {
        var dtype = ModelFactory.ParseDtype(dtypeName);
        manual_seed(0);
        var quantization = quantize is null ? null
            : SharpTune.Quantization.QuantizationOptions.Parse(quantize.Replace("+head", ""), dtypeName, lmHead: quantize.EndsWith("+head"));
        using var model = Directory.Exists(configOrDir)
            ? PretrainedModel.Load(configOrDir, dtype, quantization: quantization)
            : quantization is null ? ModelFactory.Create(BenchModels.Config(configOrDir), dtype)
            : PretrainedModel.Load(BenchModels.Checkpoint(configOrDir), quantization: quantization);
        model.eval();
        var random = new Random(1);
        var prompts = Enumerable.Range(0, batch)
            .Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, promptLength).Select(_ => random.Next(3, model.Config.VocabSize)).ToArray())
            .ToArray();
        var greedy = new GenerationOptions { Temperature = 0, EosTokenIds = [] };
        // Warm-up at full length for two seconds at least: the steady state, after the JIT's tiered recompilation of the
        // decode loop, is what is measured (tier-1 code replaces tier-0 some 100 ms after the last new method was compiled,
        // so two runs of a small model's 64 steps, ~40 ms, still measured partly unoptimised code).
        var warmUp = Stopwatch.StartNew();
        for (var run = 0; run < 2 || warmUp.Elapsed.TotalSeconds < 2; run++)
            TokenGenerator.Generate(model, prompts, greedy with { MaxNewTokens = newTokens + 1 });
        var prefill = Stopwatch.StartNew();
        TokenGenerator.Generate(model, prompts, greedy with { MaxNewTokens = 1 });
        var prefillSeconds = prefill.Elapsed.TotalSeconds;
        // Decode is timed from the first token (the end of the prefill step) to the last, inside one run: subtracting a
        // separately timed prefill from a whole run put the prefill's run-to-run variance into the per-step figure.
        long firstToken = 0, lastToken = 0;
        var full = Stopwatch.StartNew();
        TokenGenerator.Generate(model, prompts, greedy with { MaxNewTokens = newTokens + 1 }, (row, _) =>
        {
            if (row != 0) return true;
            lastToken = Stopwatch.GetTimestamp();
            if (firstToken == 0)
            {
                firstToken = lastToken;
                prefillSeconds = Math.Min(prefillSeconds, full.Elapsed.TotalSeconds);
            }
            return true;
        });
        var decodeSeconds = Math.Max(1e-9, (double)(lastToken - firstToken) / Stopwatch.Frequency);
        var name = Directory.Exists(configOrDir) ? Path.GetFileName(Path.TrimEndingDirectorySeparator(configOrDir)) : configOrDir;
        Console.WriteLine($"| {name}{(quantize is null ? "" : $" {quantize}")} | {dtypeName} | {batch} | {batch * promptLength / prefillSeconds:N0} | " +
                          $"{batch * newTokens / decodeSeconds:N0} | {decodeSeconds / newTokens * 1000:F2} | {MemoryProbe.PeakRssGiB():F2} |");
    }
}
