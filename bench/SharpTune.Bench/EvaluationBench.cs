using System.Diagnostics;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// Evaluation throughput on the S config: examples/s for perplexity (masked loss over a batch, no generation) and for
/// generation-based metrics (greedy decoding of the answers, batched), on random-token examples of realistic length.
/// </summary>
internal static class EvaluationBench
{
    public static void Run(string configName, int examples, int batch, int promptLength, int answerLength)
    {
        manual_seed(0);
        using var model = ModelFactory.Create(BenchModels.Config(configName));
        model.eval();
        var random = new Random(1);
        var items = Enumerable.Range(0, examples).Select(_ =>
        {
            var ids = Enumerable.Range(0, promptLength + answerLength).Select(_ => random.Next(3, model.Config.VocabSize)).ToArray();
            return new TokenizedExample(ids, ids.Select((_, i) => i >= promptLength).ToArray());
        }).ToArray();

        var clock = Stopwatch.StartNew();
        using (no_grad())
            foreach (var chunk in items.Chunk(batch))
            {
                using var scope = NewDisposeScope();
                using var collated = BatchCollator.Pad(chunk, model.Device);
                CausalLmLoss.Compute(model, collated).LossSum.item<float>();
            }
        var perplexityRate = examples / clock.Elapsed.TotalSeconds;

        clock.Restart();
        var options = new GenerationOptions { MaxNewTokens = answerLength, Temperature = 0, EosTokenIds = [] };
        foreach (var chunk in items.Chunk(batch))
            TokenGenerator.Generate(model, chunk.Select(e => (IReadOnlyList<int>)e.InputIds[..promptLength]).ToArray(), options);
        var generationRate = examples / clock.Elapsed.TotalSeconds;
        Console.WriteLine($"| {configName} | {batch} | {promptLength}+{answerLength} | {perplexityRate:N1} | {generationRate:N1} |");
    }
}
