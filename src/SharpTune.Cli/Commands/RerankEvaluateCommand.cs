using System.CommandLine;
using System.Globalization;
using SharpTune.Data;
using SharpTune.Evaluation;

namespace SharpTune.Cli.Commands;

/// <summary>
/// <c>sharptune rerank evaluate --model DIR [--adapter DIR] [--dtype T] --data ROWS.jsonl [--output REPORT.json]</c>: MAP, MRR@k and
/// NDCG@k of a reranker on held-out reranking rows, as sentence-transformers' CrossEncoderRerankingEvaluator computes
/// them; the report is JSON, the metrics also go to stderr.
/// </summary>
internal static class RerankEvaluateCommand
{
    public static Command Create()
    {
        var model = ModelOptions.Model();
        var dtype = ModelOptions.Dtype();
        var adapter = new Option<string?>("--adapter") { Description = "SEQ_CLS adapter folder (PEFT layout) trained with --task reranking" };
        var data = new Option<string>("--data") { Description = "JSONL/CSV/Parquet rows: query, document, label (0/1) or query, positive, negative", Required = true };
        var output = new Option<string>("--output") { Description = "Report file (JSON)", DefaultValueFactory = _ => "rerank_eval.json" };
        var atK = new Option<int>("--at-k") { Description = "Cut-off of MRR and NDCG", DefaultValueFactory = _ => 10 };
        var batchSize = new Option<int>("--batch-size") { Description = "Pairs per forward pass", DefaultValueFactory = _ => 8 };
        var maxLength = new Option<int?>("--max-length") { Description = "Cut each pair to this many tokens (longest first, at most the context); default: the training run's max_seq_length, else the model's context length" };
        var command = new Command("evaluate", "MAP, MRR@k and NDCG@k of a reranker on held-out rows (CrossEncoderRerankingEvaluator): each query's positives and negatives ranked")
        {
            model, dtype, adapter, data, output, atK, batchSize, maxLength,
        };
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(adapter), parse.GetValue(data)!, parse.GetValue(output)!,
            parse.GetValue(atK), parse.GetValue(batchSize), parse.GetValue(maxLength), Console.Error, parse.GetValue(dtype)));
        return command;
    }

    public static int Run(string modelDir, string? adapterDir, string dataPath, string outputPath, int atK, int batchSize, int? maxLength, TextWriter error,
        string? dtype = null)
    {
        try
        {
            if (batchSize < 1) throw new ArgumentException($"--batch-size must be at least 1, found {batchSize}");
            if (atK < 1) throw new ArgumentException($"--at-k must be at least 1, found {atK}");
            var report = RerankingReport.Evaluate(ModelOptions.ResolveDir(modelDir), adapterDir, dataPath, atK, batchSize, maxLength,
                ModelOptions.ParseDtype(dtype));
            report.Save(outputPath);
            error.WriteLine($"{report.Queries} queries, {report.Documents} documents:");
            foreach (var (name, value) in report.Metrics.OrderBy(m => m.Key, StringComparer.Ordinal))
                error.WriteLine($"  {name,-10} {value.ToString("F4", CultureInfo.InvariantCulture)}");
            error.WriteLine($"report: {outputPath}");
            return 0;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or InvalidOperationException or DataFormatException
            or UnauthorizedAccessException or NotSupportedException)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
