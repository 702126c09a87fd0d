using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Data;
using SharpTune.Training;

namespace SharpTune.Evaluation;

/// <summary>
/// A reranking evaluation of a cross-encoder on held-out reranking rows, as sentence-transformers'
/// CrossEncoderRerankingEvaluator reports it (<see cref="RerankingEvaluator"/>): rows grouped by query, each query's
/// positives and negatives scored and ranked, MAP, MRR@k and NDCG@k.
/// </summary>
public sealed record RerankingReport(string Model, string? Adapter, string Data, int Queries, int Documents, int AtK, IReadOnlyDictionary<string, double> Metrics)
{
    /// <summary>Loads the reranker, reads <paramref name="dataPath"/>'s reranking rows and evaluates them.</summary>
    /// <exception cref="DataFormatException">A row is not a reranking row (the message names file:line and field).</exception>
    public static RerankingReport Evaluate(string modelDirectory, string? adapterDirectory, string dataPath, int atK = 10, int batchSize = 8, int? maxLength = null,
        TorchSharp.torch.ScalarType? dtype = null)
    {
        var samples = RerankingEvaluator.FromExamples(FineTuneJob.ReadExamples(dataPath, map: RerankingExample.FromRow).Cast<RerankingExample>());
        if (samples.Count == 0) throw new InvalidDataException($"{dataPath}: no reranking rows to evaluate");
        using var reranker = Reranker.Load(modelDirectory, adapterDirectory, dtype, maxLength: maxLength);
        var metrics = RerankingEvaluator.Evaluate(reranker, samples, atK, batchSize);
        return new RerankingReport(Path.GetFullPath(modelDirectory), adapterDirectory is null ? null : Path.GetFullPath(adapterDirectory), Path.GetFullPath(dataPath),
            samples.Count, samples.Sum(s => s.Positives.Count + s.Negatives.Count), atK, metrics);
    }

    /// <summary>The report as JSON: model, adapter, data, counts, cut-off, primary metric and every metric.</summary>
    public JsonObject ToJson() => new()
    {
        ["model"] = Model,
        ["adapter"] = Adapter,
        ["data"] = Data,
        ["queries"] = Queries,
        ["documents"] = Documents,
        ["at_k"] = AtK,
        ["primary_metric"] = RerankingEvaluator.PrimaryMetric(AtK),
        ["metrics"] = new JsonObject(Metrics.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => KeyValuePair.Create(m.Key, (JsonNode?)m.Value))),
    };

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> (folders created).</summary>
    public void Save(string path)
    {
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } folder) Directory.CreateDirectory(folder);
        File.WriteAllText(path, ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
