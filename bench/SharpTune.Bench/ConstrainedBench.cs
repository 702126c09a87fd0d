using System.Diagnostics;
using System.Text.Json.Nodes;
using SharpTune.Generation;
using SharpTune.Generation.Constrained;
using SharpTune.Models;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// Decode speed with and without constrained decoding (a JSON schema) on the same model and prompt: the config S or M
/// shape with the vocabulary of a real tokenizer, random weights, sampling at temperature 1 with fixed seeds, so both runs
/// decode the same number of tokens per row. Also reports the mask computation alone per token (ms).
/// </summary>
internal static class ConstrainedBench
{
    private const string Schema = """
        {"type":"object","properties":{
          "name":{"type":"string"},"age":{"type":"integer"},"city":{"type":"string"},
          "tags":{"type":"array","items":{"type":"string"}},"active":{"type":"boolean"}},
         "required":["name","age","city","tags","active"],"additionalProperties":false}
        """;

    public static void Run(string config, string tokenizerDir, string dtypeName, int newTokens, int rounds)
    {
        var tokenizer = HfTokenizer.FromDirectory(tokenizerDir);
        var shape = BenchModels.Config(config);
        var modelConfig = shape with { VocabSize = tokenizer.VocabSize, EosTokenIds = [] };
        manual_seed(0);
        using var model = ModelFactory.Create(modelConfig, ModelFactory.ParseDtype(dtypeName));
        model.eval();
        var generator = new TextGenerator(model, tokenizer);
        var prompt = tokenizer.Encode("Describe a person as JSON:");
        var grammar = ConstrainedGrammar.FromSchema(JsonNode.Parse(Schema));
        var vocabulary = Stopwatch.StartNew();
        TokenVocabulary.For(tokenizer, modelConfig.VocabSize);
        var vocabularySeconds = vocabulary.Elapsed.TotalSeconds;
        var options = new GenerationOptions { MaxNewTokens = newTokens, Temperature = 1, Seed = 1, EosTokenIds = [] };
        generator.GenerateFromIds([prompt], options with { MaxNewTokens = 4 });   // warm-up
        generator.GenerateFromIds([prompt], options with { MaxNewTokens = 4, EosTokenIds = [2] }, grammar: grammar);
        double free = 0, constrained = 0;
        int freeTokens = 0, constrainedTokens = 0;
        for (var round = 0; round < rounds; round++)
        {
            var clock = Stopwatch.StartNew();
            freeTokens += generator.GenerateFromIds([prompt], options with { Seed = round })[0].Tokens.Count;
            free += clock.Elapsed.TotalSeconds;
            clock.Restart();
            constrainedTokens += generator.GenerateFromIds([prompt], options with { Seed = round, EosTokenIds = [2] }, grammar: grammar)[0].Tokens.Count;
            constrained += clock.Elapsed.TotalSeconds;
        }
        // The mask alone: replay the constrained outputs' tokens through a fresh constraint, timing FillAllowed.
        var masks = new Stopwatch();
        var steps = 0;
        var allowed = new bool[modelConfig.VocabSize];
        for (var round = 0; round < rounds; round++)
        {
            var tokens = generator.GenerateFromIds([prompt], options with { Seed = round, EosTokenIds = [2] }, grammar: grammar)[0].Tokens;
            var constraint = grammar.CreateConstraint(TokenVocabulary.For(tokenizer, modelConfig.VocabSize), [2]);
            masks.Start();
            for (var i = 0; i < tokens.Count; i++)
            {
                constraint.FillAllowed(allowed, newTokens - i);
                constraint.Accept(tokens[i]);
                steps++;
            }
            masks.Stop();
        }
        var freeRate = freeTokens / free;
        var constrainedRate = constrainedTokens / constrained;
        Console.WriteLine($"| {config} | {Path.GetFileName(Path.TrimEndingDirectorySeparator(tokenizerDir))} ({tokenizer.VocabSize}) | {dtypeName} | " +
                          $"{freeRate:N1} | {constrainedRate:N1} | {100 * (1 - constrainedRate / freeRate):F1}% | " +
                          $"{masks.Elapsed.TotalMilliseconds / Math.Max(1, steps):F3} | {vocabularySeconds:F2} |");
    }
}
