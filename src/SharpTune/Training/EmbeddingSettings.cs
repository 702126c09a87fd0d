using SharpTune.Embeddings;
using SharpTune.Training.Objectives;

namespace SharpTune.Training;

/// <summary>
/// Task embedding's settings from <see cref="TrainingOptions"/>: the loss (<c>loss_type</c>: mnrl, the default,
/// cached-mnrl or cosent), its similarity scale, the cached loss's mini-batch size, the pooling a base without sentence-transformers files gets, and the Matryoshka
/// dimensions the loss is wrapped in, if any.
/// </summary>
/// <param name="Normalize">normalize_embeddings as given; null = not given (true for a base without modules.json, the base's own otherwise).</param>
internal sealed record EmbeddingSettings(string Loss, double Scale, PoolingMode? Pooling, bool? Normalize)
{
    /// <summary>MatryoshkaLoss around <see cref="Loss"/>; null = the plain loss.</summary>
    public MatryoshkaSettings? Matryoshka { get; init; }

    /// <summary>sentence-transformers' MultipleNegativesRankingLoss over (anchor, positive, negative?) rows.</summary>
    public const string MultipleNegativesRanking = "mnrl";

    /// <summary>sentence-transformers' CachedMultipleNegativesRankingLoss (GradCache) over the same rows as MNRL.</summary>
    public const string CachedMultipleNegativesRanking = "cached-mnrl";

    /// <summary>sentence-transformers' CoSENTLoss over (sentence1, sentence2, score) rows.</summary>
    public const string CoSent = "cosent";

    public static IReadOnlyList<string> Losses { get; } = [MultipleNegativesRanking, CachedMultipleNegativesRanking, CoSent];

    /// <summary><see cref="NoDuplicatesBatchSampler.Default"/> or <see cref="NoDuplicatesBatchSampler.NoDuplicates"/>.</summary>
    public string BatchSampler { get; init; } = NoDuplicatesBatchSampler.Default;

    /// <summary>Texts per forward pass of cached-mnrl.</summary>
    public int MiniBatchSize { get; init; } = CachedEmbeddingObjective.DefaultMiniBatchSize;

    public static EmbeddingSettings From(TrainingOptions options)
    {
        var loss = (options.LossType ?? MultipleNegativesRanking).Trim().ToLowerInvariant().Replace('_', '-');
        if (!Losses.Contains(loss))
            throw new ArgumentException($"loss_type (--loss-type) for task embedding must be one of {string.Join(", ", Losses)}, found '{options.LossType}'");
        var scale = options.SimilarityScale ?? MultipleNegativesRankingLoss.DefaultScale;
        if (!double.IsFinite(scale) || scale <= 0)
            throw new ArgumentException($"similarity_scale (--similarity-scale) must be a positive number, found {scale}");
        PoolingMode? pooling = options.Pooling is { } name
            ? SentenceTransformerConfig.ParsePoolingMode(name) ?? throw new ArgumentException(
                $"pooling (--pooling) must be one of {string.Join(", ", SentenceTransformerConfig.PoolingModeNames.Keys.Order(StringComparer.Ordinal))}, found '{name}'")
            : null;
        if (options.NormalizeEmbeddings is not null && pooling is null)
            throw new ArgumentException("normalize_embeddings (--normalize-embeddings) goes with pooling (--pooling): without it the base's " +
                                        "modules.json, or last-token pooling with normalisation, decides");
        if (options.MiniBatchSize is { } mini)
        {
            if (loss != CachedMultipleNegativesRanking)
                throw new ArgumentException($"mini_batch_size (--mini-batch-size) goes with loss_type cached-mnrl, not {loss}");
            if (mini < 1) throw new ArgumentException($"mini_batch_size (--mini-batch-size) must be at least 1, found {mini}");
        }
        return new EmbeddingSettings(loss, scale, pooling, options.NormalizeEmbeddings)
        {
            Matryoshka = MatryoshkaSettings.From(options),
            MiniBatchSize = options.MiniBatchSize ?? CachedEmbeddingObjective.DefaultMiniBatchSize,
            BatchSampler = NoDuplicatesBatchSampler.Parse(options.BatchSampler),
        };
    }

    /// <summary>Refuses the embedding settings outside task embedding, and checks them within it.</summary>
    public static void Validate(TrainingOptions options, string task)
    {
        if (task == TrainingTasks.Embedding)
        {
            From(options);
            return;
        }
        if (options.Pooling is not null) throw new ArgumentException($"pooling (--pooling) applies to task embedding only, not task {task}");
        if (options.NormalizeEmbeddings is not null)
            throw new ArgumentException($"normalize_embeddings (--normalize-embeddings) applies to task embedding only, not task {task}");
        if (options.SimilarityScale is not null)
            throw new ArgumentException($"similarity_scale (--similarity-scale) applies to task embedding only, not task {task}");
        if (options.BatchSampler is not null)
            throw new ArgumentException($"batch_sampler (--batch-sampler) applies to task embedding only, not task {task}");
        if (options.MiniBatchSize is not null)
            throw new ArgumentException($"mini_batch_size (--mini-batch-size) applies to task embedding only, not task {task}");
        if (options.MatryoshkaDims is not null || options.MatryoshkaWeights is not null)
            throw new ArgumentException($"matryoshka_dims (--matryoshka-dims) and matryoshka_weights apply to task embedding only, not task {task}");
    }

    /// <summary>
    /// The pooling the run trains and saves: the base folder's sentence-transformers files when it has a modules.json
    /// (an explicit pooling, or an explicit normalize_embeddings, that differs from them is an error; normalisation left out
    /// takes the base's), else the explicit pooling (normalised unless told otherwise), else last-token pooling
    /// with normalisation (<see cref="SentenceTransformerConfig.Default"/>, vLLM's default for a decoder).
    /// </summary>
    public SentenceTransformerConfig PoolingFor(string modelDirectory, int hiddenSize)
    {
        var stored = SentenceTransformerConfig.FromDirectory(modelDirectory, hiddenSize);
        if (stored.FromSentenceTransformerFiles)
        {
            if (Pooling is { } mode && (stored.PoolingModes.Count != 1 || stored.PoolingModes[0] != mode || (Normalize is { } normalize && stored.Normalize != normalize)))
                throw new ArgumentException($"pooling (--pooling) {mode}{Normalize switch { true => " with normalisation", false => " without normalisation", null => "" }} differs from what " +
                    $"{Path.Combine(modelDirectory, SentenceTransformerConfig.ModulesFileName)} sets ({string.Join("+", stored.PoolingModes)}" +
                    $"{(stored.Normalize ? ", normalised" : "")}); drop --pooling to train the base's own pooling");
            return stored;
        }
        return Pooling is { } chosen ? stored with { PoolingModes = [chosen], Normalize = Normalize ?? true } : stored;
    }
}
