using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Embeddings;
using SharpTune.Generation;
using SharpTune.Training;

namespace SharpTune.Evaluation;

/// <summary>
/// A retrieval evaluation of an embedding model on held-out (anchor, positive) rows, as sentence-transformers'
/// InformationRetrievalEvaluator reports it: each distinct anchor a query, each distinct positive a document, a query's
/// own positives relevant (<see cref="RetrievalSet.FromPairs"/>), cosine similarity, metrics at the evaluator's cut-offs.
/// </summary>
public sealed record RetrievalReport(string Model, string? Adapter, string Data, int Queries, int Corpus, IReadOnlyDictionary<string, double> Metrics)
{
    /// <summary>The metric sentence-transformers calls primary (<see cref="RetrievalMetrics.PrimaryMetric"/>).</summary>
    public string PrimaryMetric { get; init; } = RetrievalMetrics.PrimaryMetric();

    /// <summary>The Matryoshka width the embeddings were cut to (the evaluator's <c>truncate_dim</c>); null = the full width.</summary>
    public int? TruncateDim { get; init; }

    /// <summary>
    /// Loads the model (with the adapter, whose sentence-transformers files win over the model's), reads
    /// <paramref name="dataPath"/>'s embedding rows and evaluates them.
    /// </summary>
    /// <exception cref="DataFormatException">A row lacks a non-empty anchor or positive (the message names file:line and field).</exception>
    public static RetrievalReport Evaluate(string modelDirectory, string? adapterDirectory, string dataPath, int batchSize = 16,
        EmbeddingRequestOptions? queryOptions = null, EmbeddingRequestOptions? corpusOptions = null, CancellationToken cancellationToken = default)
    {
        var set = RetrievalSet.FromExamples(FineTuneJob.ReadExamples(dataPath, map: EmbeddingPairExample.FromRow).Cast<EmbeddingPairExample>());
        using var loaded = LoadedModel.Load(modelDirectory, adapterDirectory);
        var embedder = TextEmbedder.ForDirectory(loaded.Model, loaded.RequireTokenizer(), loaded.ModelDirectory, adapterDirectory);
        embedder.BatchSize = batchSize;
        var metrics = set.Evaluate(embedder, null, queryOptions, corpusOptions, cancellationToken);
        return new RetrievalReport(loaded.ModelDirectory, adapterDirectory is null ? null : Path.GetFullPath(adapterDirectory), Path.GetFullPath(dataPath),
            set.Queries.Count, set.Corpus.Count, metrics) { TruncateDim = queryOptions?.Dimensions ?? corpusOptions?.Dimensions };
    }

    /// <summary>The report as JSON: model, adapter, data, counts, score function, truncation, primary metric and every metric.</summary>
    public JsonObject ToJson() => new()
    {
        ["model"] = Model,
        ["adapter"] = Adapter,
        ["data"] = Data,
        ["queries"] = Queries,
        ["corpus"] = Corpus,
        ["score_function"] = RetrievalMetrics.ScoreFunction,
        ["truncate_dim"] = TruncateDim,
        ["primary_metric"] = PrimaryMetric,
        ["metrics"] = new JsonObject(Metrics.OrderBy(m => m.Key, StringComparer.Ordinal).Select(m => KeyValuePair.Create(m.Key, (JsonNode?)m.Value))),
    };

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> (folders created).</summary>
    public void Save(string path)
    {
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } folder) Directory.CreateDirectory(folder);
        File.WriteAllText(path, ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
