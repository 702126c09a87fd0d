using System.Diagnostics;
using SharpTune.Generation;
using SharpTune.Generation.Speculative;
using SharpTune.Models;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// Greedy decode throughput, batch 1, without and with speculative decoding (a draft model or prompt lookup), rounds
/// interleaved in one process so both figures share the machine's state; also the acceptance rate and whether the two
/// outputs agree token for token (in fp32 they should; in bf16 a near-tie between two tokens' logits can flip, as the
/// verification pass rounds differently from one-token steps).
/// </summary>
internal static class SpeculativeBench
{
    /// <param name="modelDir">The model: a checkpoint folder (its tokenizer.json encodes the prompt), or a bench shape (S, M, …)
    /// with random weights (a seeded random prompt of 32 ids).</param>
    /// <param name="source">A draft model folder, self (the model drafts for itself: every candidate accepted, the
    /// overhead of the rounds alone), or lookup:N for prompt lookup with N tokens.</param>
    public static void Run(string modelDir, string source, string dtypeName, int newTokens, int rounds, int draftTokens, string prompt)
    {
        var dtype = ModelFactory.ParseDtype(dtypeName);
        manual_seed(0);
        using var model = Directory.Exists(modelDir) ? PretrainedModel.Load(modelDir, dtype) : ModelFactory.Create(BenchModels.Config(modelDir), dtype);
        model.eval();
        using var loadedDraft = source.StartsWith("lookup:", StringComparison.Ordinal) || source == "self" ? null : PretrainedModel.Load(source, dtype);
        loadedDraft?.eval();
        var draft = source == "self" ? model : loadedDraft;
        var speculative = draft is not null
            ? new SpeculativeOptions { DraftModel = draft, NumDraftTokens = draftTokens }
            : new SpeculativeOptions { PromptLookupTokens = int.Parse(source["lookup:".Length..]) };
        var random = new Random(1);
        IReadOnlyList<int> ids = File.Exists(Path.Combine(modelDir, "tokenizer.json"))
            ? HfTokenizer.FromDirectory(modelDir).Encode(prompt, addSpecialTokens: true)
            : Enumerable.Range(0, 32).Select(_ => random.Next(3, model.Config.VocabSize)).ToArray();
        // No EOS: every run writes newTokens tokens, so the two rates divide the same work.
        var plain = new GenerationOptions { Temperature = 0, MaxNewTokens = newTokens, EosTokenIds = [] };
        var fast = plain with { Speculative = speculative };
        TokenGenerator.Generate(model, [ids], plain);   // warm-up
        TokenGenerator.Generate(model, [ids], fast);
        double plainSeconds = 0, fastSeconds = 0;
        long proposed = 0, accepted = 0;
        var same = true;
        for (var round = 0; round < rounds; round++)
        {
            var clock = Stopwatch.StartNew();
            var reference = TokenGenerator.Generate(model, [ids], plain)[0];
            plainSeconds += clock.Elapsed.TotalSeconds;
            clock.Restart();
            var result = TokenGenerator.Generate(model, [ids], fast)[0];
            fastSeconds += clock.Elapsed.TotalSeconds;
            proposed += result.Speculation!.Proposed;
            accepted += result.Speculation.Accepted;
            same &= reference.Tokens.SequenceEqual(result.Tokens);
        }
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(modelDir));
        var with = loadedDraft is null ? source : Path.GetFileName(Path.TrimEndingDirectorySeparator(source));
        Console.WriteLine($"| {name} | {with} | {dtypeName} | {newTokens} | {rounds * newTokens / plainSeconds:N1} | {rounds * newTokens / fastSeconds:N1} | " +
                          $"{plainSeconds / fastSeconds:F2}× | {accepted}/{proposed} ({(proposed == 0 ? 0 : (double)accepted / proposed):P0}) | {(same ? "yes" : "NO")} |");
    }
}
