using SharpTune.Data;
using SharpTune.Embeddings;

namespace SharpTune.Evaluation;

/// <summary>
/// Queries, a corpus and which documents answer which query: what sentence-transformers' InformationRetrievalEvaluator
/// takes. <see cref="FromPairs"/> builds it from (anchor, positive) rows as the embedding task's validation does: each
/// distinct anchor a query, each distinct positive a document, a query's own positives relevant.
/// </summary>
public sealed record RetrievalSet(IReadOnlyList<string> Queries, IReadOnlyList<string> Corpus, IReadOnlyList<IReadOnlySet<int>> Relevant)
{
    /// <summary>
    /// Every distinct anchor a query and every distinct positive a document (a text that appears twice is one query or
    /// one document, so it cannot compete with itself); a query's relevant documents are the positives of its rows.
    /// </summary>
    public static RetrievalSet FromPairs(IEnumerable<(string Anchor, string Positive)> pairs) =>
        Build(pairs.Select(p => (p.Anchor, p.Positive, (string?)null, (string?)null)));

    /// <summary>
    /// The set of the rows of an embedding data file (<see cref="EmbeddingPairExample"/>); an error embedding a text names
    /// the file:line and field it first appeared at.
    /// </summary>
    public static RetrievalSet FromExamples(IEnumerable<EmbeddingPairExample> examples) =>
        Build(examples.Select(e => (e.Anchor, e.Positive, (string?)$"{e.SourceFile}:{e.LineNumber}: field 'anchor'", (string?)$"{e.SourceFile}:{e.LineNumber}: field 'positive'")));

    private static RetrievalSet Build(IEnumerable<(string Anchor, string Positive, string? AnchorOrigin, string? PositiveOrigin)> pairs)
    {
        var queries = new List<string>();
        var corpus = new List<string>();
        var queryOrigins = new List<string?>();
        var corpusOrigins = new List<string?>();
        var relevant = new List<HashSet<int>>();
        var queryIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        var corpusIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (anchor, positive, anchorOrigin, positiveOrigin) in pairs)
        {
            if (!queryIndex.TryGetValue(anchor, out var q))
            {
                queryIndex[anchor] = q = queries.Count;
                queries.Add(anchor);
                queryOrigins.Add(anchorOrigin);
                relevant.Add([]);
            }
            if (!corpusIndex.TryGetValue(positive, out var d))
            {
                corpusIndex[positive] = d = corpus.Count;
                corpus.Add(positive);
                corpusOrigins.Add(positiveOrigin);
            }
            relevant[q].Add(d);
        }
        return new RetrievalSet(queries, corpus, relevant) { QueryOrigins = queryOrigins, CorpusOrigins = corpusOrigins };
    }

    /// <summary>Where each query was first read ("file:line: field 'anchor'"), for errors; null entries (or list) when unknown.</summary>
    internal IReadOnlyList<string?>? QueryOrigins { get; init; }

    /// <summary>Where each document was first read ("file:line: field 'positive'"), for errors; null entries (or list) when unknown.</summary>
    internal IReadOnlyList<string?>? CorpusOrigins { get; init; }

    /// <summary>
    /// Embeds the queries and the corpus with <paramref name="embedder"/> (its pooling, normalisation and default prompt),
    /// ranks the corpus for each query by cosine similarity, and returns <see cref="RetrievalMetrics.Compute"/>'s metrics.
    /// </summary>
    /// <param name="queryOptions">The queries' prompt (the evaluator's query_prompt / query_prompt_name); null = the model's default.</param>
    /// <param name="corpusOptions">The documents' prompt (corpus_prompt / corpus_prompt_name); null = the model's default.</param>
    public IReadOnlyDictionary<string, double> Evaluate(TextEmbedder embedder, RetrievalCutoffs? cutoffs = null, EmbeddingRequestOptions? queryOptions = null,
        EmbeddingRequestOptions? corpusOptions = null, CancellationToken cancellationToken = default)
    {
        var (queries, corpus) = Embed(embedder, queryOptions, corpusOptions, cancellationToken);
        return Score(queries, corpus, cutoffs);
    }

    /// <summary>The queries' and the documents' embeddings, in <see cref="Queries"/> and <see cref="Corpus"/> order.</summary>
    internal (IReadOnlyList<float[]> Queries, IReadOnlyList<float[]> Corpus) Embed(TextEmbedder embedder, EmbeddingRequestOptions? queryOptions,
        EmbeddingRequestOptions? corpusOptions, CancellationToken cancellationToken = default)
    {
        if (Queries.Count == 0) throw new ArgumentException("no queries to evaluate");
        return (embedder.Embed(Queries, queryOptions, i => QueryOrigins?[i] ?? $"query {i}", cancellationToken).Vectors,
            embedder.Embed(Corpus, corpusOptions, i => CorpusOrigins?[i] ?? $"document {i}", cancellationToken).Vectors);
    }

    /// <summary>The metrics of embeddings already computed (<see cref="Embed"/>), ranked by cosine similarity.</summary>
    internal IReadOnlyDictionary<string, double> Score(IReadOnlyList<float[]> queries, IReadOnlyList<float[]> corpus, RetrievalCutoffs? cutoffs = null)
    {
        cutoffs ??= new RetrievalCutoffs();
        var rankings = RetrievalMetrics.RankByCosine(queries, corpus, cutoffs.MaxK);
        return RetrievalMetrics.Compute(rankings, Relevant, cutoffs);
    }
}
