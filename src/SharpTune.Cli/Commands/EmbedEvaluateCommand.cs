using System.CommandLine;
using System.Globalization;
using SharpTune.Data;
using SharpTune.Embeddings;
using SharpTune.Evaluation;
using SharpTune.Generation;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune embed evaluate --model DIR [--adapter DIR] --data PAIRS.jsonl [--truncate-dim N] [--output REPORT.json]</c>: retrieval metrics
/// of an embedding model on held-out (anchor, positive) rows, as sentence-transformers' InformationRetrievalEvaluator
/// computes them; the report is JSON, the metrics also go to stderr.
/// </summary>
internal static class EmbedEvaluateCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var adapter = new Option<string?>("--adapter") { Description = "Adapter folder (PEFT layout; its modules.json and pooling config win over the model's)" };
        var data = new Option<string>("--data") { Description = "JSONL/CSV/Parquet rows with anchor and positive (sentence-transformers' columns)", Required = true };
        var output = new Option<string>("--output") { Description = "Report file (JSON)", DefaultValueFactory = _ => "retrieval_eval.json" };
        var batchSize = new Option<int>("--batch-size") { Description = "Texts per forward pass", DefaultValueFactory = _ => 16 };
        var queryPrompt = new Option<string?>("--query-prompt-name") { Description = "A prompt of config_sentence_transformers.json for the queries (anchors)" };
        var corpusPrompt = new Option<string?>("--corpus-prompt-name") { Description = "A prompt of config_sentence_transformers.json for the documents (positives)" };
        var truncateDim = new Option<int?>("--truncate-dim", "--dimensions") { Description = "Score the first N dimensions only (a Matryoshka width; the evaluator's truncate_dim)" };
        var command = new Command("evaluate",
            "Retrieval metrics (accuracy/precision/recall/MRR/NDCG/MAP@k, cosine) on held-out anchor/positive rows: each anchor a query, every positive the corpus")
        {
            model, adapter, data, output, batchSize, queryPrompt, corpusPrompt, truncateDim,
        };
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(adapter), parse.GetValue(data)!, parse.GetValue(output)!,
            parse.GetValue(batchSize), parse.GetValue(queryPrompt), parse.GetValue(corpusPrompt), Console.Error, parse.GetValue(truncateDim)));
        return command;
    }

    public static int Run(string modelDir, string? adapterDir, string dataPath, string outputPath, int batchSize, string? queryPrompt, string? corpusPrompt,
        TextWriter error, int? truncateDim = null)
    {
        try
        {
            if (batchSize < 1) throw new ArgumentException($"--batch-size must be at least 1, found {batchSize}");
            var report = RetrievalReport.Evaluate(ModelOptions.ResolveDir(modelDir), adapterDir, dataPath, batchSize,
                new EmbeddingRequestOptions { PromptName = queryPrompt, Dimensions = truncateDim },
                new EmbeddingRequestOptions { PromptName = corpusPrompt, Dimensions = truncateDim });
            report.Save(outputPath);
            error.WriteLine($"{report.Queries} queries, {report.Corpus} documents (cosine{(truncateDim is { } d ? $", first {d} dimensions" : "")}):");
            foreach (var (name, value) in report.Metrics.OrderBy(m => m.Key, StringComparer.Ordinal))
                error.WriteLine($"  {name,-22} {value.ToString("F4", CultureInfo.InvariantCulture)}");
            error.WriteLine($"report: {outputPath}");
            return 0;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or InvalidOperationException or DataFormatException
            or ContextLengthException or UnauthorizedAccessException or NotSupportedException)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
