using System.CommandLine;
using System.Text.Json.Nodes;
using SharpTune.Classification;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune rerank --model DIR [--adapter DIR] --query Q --document D … [--top-k N]</c>: the documents ranked by a
/// cross-encoder's score with the query (sentence-transformers' CrossEncoder.rank), one JSON line each with its
/// <c>index</c>, <c>score</c> and <c>document</c>; <c>rerank evaluate</c> scores held-out rows (<see cref="RerankEvaluateCommand"/>).
/// </summary>
internal static class RerankCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var dtype = ModelOptions.Dtype();
        var adapter = new Option<string?>("--adapter") { Description = "SEQ_CLS adapter folder (PEFT layout) trained with --task reranking" };
        var query = new Option<string>("--query") { Description = "The query", Required = true };
        var documents = new Option<string[]>("--document") { Description = "A document to rank (repeatable)", Required = true, AllowMultipleArgumentsPerToken = false };
        var topK = new Option<int?>("--top-k") { Description = "Keep the N best documents" };
        var maxLength = new Option<int?>("--max-length") { Description = "Cut each pair to this many tokens (longest first, at most the context); default: the training run's max_seq_length, else the model's context length" };
        var batchSize = new Option<int>("--batch-size") { Description = "Pairs per forward pass", DefaultValueFactory = _ => 8 };
        var command = new Command("rerank", "Rank documents for a query with a reranker (a one-label *ForSequenceClassification head; train one with `sharptune train --task reranking`)")
        {
            model, dtype, adapter, query, documents, topK, maxLength, batchSize,
        };
        command.Subcommands.Add(RerankEvaluateCommand.Create());
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(adapter), parse.GetValue(dtype), parse.GetValue(query)!,
            parse.GetValue(documents) ?? [], parse.GetValue(topK), parse.GetValue(maxLength), parse.GetValue(batchSize), Console.Out, Console.Error));
        return command;
    }

    public static int Run(string modelDir, string? adapterDir, string? dtype, string query, IReadOnlyList<string> documents, int? topK, int? maxLength,
        int batchSize, TextWriter stdout, TextWriter error)
    {
        try
        {
            if (batchSize < 1) throw new ArgumentException($"--batch-size must be at least 1, found {batchSize}");
            using var reranker = Reranker.Load(ModelOptions.ResolveDir(modelDir), adapterDir, ModelOptions.ParseDtype(dtype), maxLength: maxLength);
            foreach (var ranked in reranker.Rank(query, documents, topK, batchSize))
                stdout.WriteLine(new JsonObject { ["index"] = ranked.Index, ["score"] = ranked.Score, ["document"] = ranked.Document }.ToJsonString());
            return 0;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or InvalidOperationException
            or UnauthorizedAccessException or NotSupportedException)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
