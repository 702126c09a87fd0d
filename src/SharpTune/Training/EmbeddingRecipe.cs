using SharpTune.Data;
using SharpTune.Embeddings;
using SharpTune.Evaluation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tokenization;
using SharpTune.Training.Objectives;

namespace SharpTune.Training;

/// <summary>
/// Text-embedding models within <see cref="FineTuneJob"/> (<c>task: embedding</c>), as sentence-transformers'
/// SentenceTransformerTrainer trains one with MultipleNegativesRankingLoss: (anchor, positive, negatives?) rows, the texts
/// embedded with the model's pooling on the training forward, the loss over each micro-batch's in-batch and hard
/// negatives, on the common trainer (schedules, accumulation, validation, early stopping, checkpoints, exact resume).
/// Validation adds InformationRetrievalEvaluator's metrics on the held-out pairs. <c>loss_type: cosent</c> trains
/// CoSENTLoss over (sentence1, sentence2, score) rows instead (<see cref="CoSentObjective"/>), <c>loss_type: cached-mnrl</c>
/// MNRL with gradient caching (<see cref="CachedEmbeddingObjective"/>); <c>matryoshka_dims</c> wraps
/// either in MatryoshkaLoss and adds each dimension's validation metrics. LoRA/DoRA runs save a PEFT
/// FEATURE_EXTRACTION adapter with the sentence-transformers files beside it; full runs a sentence-transformers folder.
/// </summary>
internal static class EmbeddingRecipe
{
    /// <summary>Writes the trained model: the adapter or the whole model, with modules.json and the pooling config beside it.</summary>
    public static void Save(CausalLanguageModel model, IPeftAdapter? adapter, SentenceTransformerConfig pooling, string dir, string modelDir, int maxSeqLength)
    {
        if (adapter is null) PretrainedModel.Save(model, dir);
        else PeftAdapters.Save(adapter, dir, Path.GetFullPath(modelDir));
        SentenceTransformerFiles.Write(pooling, dir, model.Config.HiddenSize, maxSeqLength);
    }

    /// <summary>How the loss reads a row: (anchor, positive, negatives) for MNRL, (sentence1, sentence2, score) for CoSENT.</summary>
    public static Func<DataRow, TrainingExample> RowMap(EmbeddingSettings settings) =>
        settings.Loss == EmbeddingSettings.CoSent ? ScoredPairExample.FromRow : EmbeddingPairExample.FromRow;

    /// <summary>The length texts are cut to in training, saved as max_seq_length and used by the evaluation embedders: --max-seq-length, at most the context.</summary>
    public static int MaxLength(TrainingOptions options, CausalLanguageModel model) => Math.Min(options.MaxSeqLength, model.Config.ContextLength);

    /// <summary>
    /// How many texts validation and --test embed per forward: the micro-batch size, and with cached-mnrl at most its
    /// mini-batch — the point of cached MNRL is a micro-batch too large for one forward, so evaluation must not run one.
    /// </summary>
    internal static int EvaluationBatchSize(TrainingOptions options, EmbeddingSettings settings) =>
        settings.Loss == EmbeddingSettings.CachedMultipleNegativesRanking ? Math.Min(options.MicroBatchSize, settings.MiniBatchSize) : options.MicroBatchSize;

    public static FineTuneResult Run(RecipeContext context, EmbeddingSettings settings, SentenceTransformerConfig pooling, HfTokenizer tokenizer,
        IReadOnlyList<TrainingExample> train, IReadOnlyList<TrainingExample> validation, IReadOnlyList<TrainingExample> test, ParameterSummary parameters)
    {
        var options = context.Options;
        var maxLength = MaxLength(options, context.Model);
        // Validation and --test embed the raw texts: cut them as training cut them, as the saved folder's embedder will.
        pooling = pooling with { MaxSeqLength = maxLength };
        var matryoshka = settings.Matryoshka;
        if (matryoshka is not null)
        {
            var width = context.Model.Config.HiddenSize * pooling.PoolingModes.Count;
            matryoshka.CheckWidth(width);
            context.Log?.Invoke($"embedding: MatryoshkaLoss at {string.Join(", ", matryoshka.Dims.Zip(matryoshka.Weights, (d, w) => $"{d} (weight {w:G4})"))}");
            if (matryoshka.WidthWarning(width) is { } warning) context.Log?.Invoke("warning: " + warning);
        }
        var dims = matryoshka?.Dims ?? [];
        if (settings.Loss == EmbeddingSettings.CoSent)
        {
            var similarity = new TextEmbedder(context.Model, tokenizer, pooling) { BatchSize = EvaluationBatchSize(options, settings) };
            var correlation = validation.Count < 2 ? null : new CorrelationHook(similarity, validation.Cast<ScoredPairExample>().ToList(), dims);
            var cosent = new Trainer(context.Model, context.Trainable, options, context.SaveModel, new CoSentObjective(pooling, settings.Scale, matryoshka), correlation)
                { ArrangeEpoch = Sampler(context, settings, train.Select(ScoredTexts).ToList()) };
            var scored = context.Run(cosent, examples => TokenizeScored(examples, tokenizer, maxLength), train,
                EvaluationOrder(options, settings, validation, ScoredTexts), EvaluationOrder(options, settings, test, ScoredTexts), ScoredPairCollator.Collate, parameters);
            if (test.Count < 2 || scored.TestMetrics is null) return scored;
            return scored with { TestMetrics = scored.TestMetrics.Concat(CorrelationHook.Scores(similarity, test.Cast<ScoredPairExample>().ToList(), dims, "")).ToDictionary() };
        }
        var embedder = new TextEmbedder(context.Model, tokenizer, pooling) { BatchSize = EvaluationBatchSize(options, settings) };
        var hook = validation.Count == 0 ? null : new RetrievalHook(embedder, RetrievalSet.FromExamples(validation.Cast<EmbeddingPairExample>()), dims);
        ITrainingObjective objective = settings.Loss == EmbeddingSettings.CachedMultipleNegativesRanking
            ? new CachedEmbeddingObjective(pooling, settings.Scale, settings.MiniBatchSize, matryoshka)
            : new EmbeddingObjective(pooling, settings.Scale, matryoshka);
        if (objective is CachedEmbeddingObjective) LogCachedPieces(context, settings, train);
        var trainer = new Trainer(context.Model, context.Trainable, options, context.SaveModel, objective, hook)
            { ArrangeEpoch = Sampler(context, settings, train.Select(PairTexts).ToList()) };
        var result = context.Run(trainer, examples => Tokenize(examples, tokenizer, maxLength), train,
            EvaluationOrder(options, settings, validation, PairTexts), EvaluationOrder(options, settings, test, PairTexts), EmbeddingCollator.Collate, parameters);
        if (test.Count == 0 || result.TestMetrics is null) return result;
        var retrieval = RetrievalHook.Scores(embedder, RetrievalSet.FromExamples(test.Cast<EmbeddingPairExample>()), dims, "");
        return result with { TestMetrics = result.TestMetrics.Concat(retrieval).ToDictionary() };
    }

    /// <summary>
    /// With batch_sampler no_duplicates, how each epoch's permutation becomes <see cref="NoDuplicatesBatchSampler"/>'s
    /// batches of the micro-batch size, over the rows' texts (every column; a CoSENT score is a label, not a text, as
    /// sentence-transformers drops label columns). Training rows become training items one for one, so indices match.
    /// Each epoch, as the trainer arranges it (on a resume, the epoch it resumes in), logs its micro-batches and, as a
    /// warning, how many rows had to join a micro-batch sharing a text with them.
    /// </summary>
    private static Func<int[], int, int[]>? Sampler(RecipeContext context, EmbeddingSettings settings, IReadOnlyList<IReadOnlyCollection<string>> texts)
    {
        if (settings.BatchSampler != NoDuplicatesBatchSampler.NoDuplicates) return null;
        var size = context.Options.MicroBatchSize;
        var log = context.Log;
        return (order, epoch) =>
        {
            var (batches, forced) = NoDuplicatesBatchSampler.Batches(texts, order, size);
            log?.Invoke(NoDuplicatesBatchSampler.Describe(batches, forced, size, epoch));
            return [.. batches.SelectMany(b => b)];
        };
    }

    private static void LogCachedPieces(RecipeContext context, EmbeddingSettings settings, IReadOnlyList<TrainingExample> train)
    {
        var negatives = train.Cast<EmbeddingPairExample>().Select(r => r.Negatives.Count).DefaultIfEmpty(0).Max();
        foreach (var line in CachedPieceNotes(context.Options.MicroBatchSize, settings.MiniBatchSize, negatives)) context.Log?.Invoke(line);
    }

    /// <summary>
    /// How cached MNRL cuts each micro-batch (rows of an anchor, a positive and up to <paramref name="maxNegatives"/>
    /// negatives), and a warning when <paramref name="miniBatchSize"/> holds a whole micro-batch's texts: its one piece
    /// is then the micro-batch, and the second forward pass costs time for nothing plain MNRL would not give.
    /// </summary>
    internal static IEnumerable<string> CachedPieceNotes(int microBatchSize, int miniBatchSize, int maxNegatives)
    {
        var texts = microBatchSize * (2 + maxNegatives);
        yield return $"embedding: CachedMultipleNegativesRankingLoss, {miniBatchSize} texts per forward pass (--mini-batch-size) of up to {texts} per micro-batch";
        if (miniBatchSize >= texts)
            yield return $"warning: --mini-batch-size {miniBatchSize} holds a whole micro-batch's texts (up to {texts}), so cached-mnrl " +
                "runs every text forward twice to no purpose: mnrl gives the same loss and gradients in one pass (or raise --batch-size)";
    }

    /// <summary>A row's texts as the batch sampler sees them: every column (a CoSENT score is a label, not a text).</summary>
    private static IReadOnlyCollection<string> PairTexts(TrainingExample row) =>
        row is EmbeddingPairExample r ? [r.Anchor, r.Positive, .. r.Negatives] : throw new ArgumentException("expected an (anchor, positive) row", nameof(row));

    private static IReadOnlyCollection<string> ScoredTexts(TrainingExample row) =>
        row is ScoredPairExample r ? [r.Sentence1, r.Sentence2] : throw new ArgumentException("expected a (sentence1, sentence2, score) row", nameof(row));

    /// <summary>
    /// The validation or test rows in the order their loss is taken in (cut into micro-batches in that order): with
    /// batch_sampler no_duplicates, <see cref="NoDuplicatesBatchSampler"/>'s arrangement of the seed's epoch-0
    /// permutation, as sentence-transformers' <c>get_eval_dataloader</c> and <c>get_test_dataloader</c> give the eval
    /// dataset the same batch sampler as training, seeded with the run's seed (UKPLab/sentence-transformers@00e20051a1e3a7c38a75edaba7a1ad4ca0b6974e,
    /// sentence_transformers/trainer.py), so val_loss scores no text against itself either; otherwise the rows as given.
    /// The retrieval and correlation metrics do not depend on the order and keep the given one.
    /// </summary>
    internal static IReadOnlyList<TrainingExample> EvaluationOrder(TrainingOptions options, EmbeddingSettings settings, IReadOnlyList<TrainingExample> rows,
        Func<TrainingExample, IReadOnlyCollection<string>> texts)
    {
        if (settings.BatchSampler != NoDuplicatesBatchSampler.NoDuplicates || rows.Count == 0) return rows;
        var order = NoDuplicatesBatchSampler.EpochOrder(rows.Select(texts).ToList(), Trainer.SeededPermutation(rows.Count, options.Seed, 0), options.MicroBatchSize);
        return [.. order.Select(i => rows[i])];
    }

    /// <summary>
    /// The widths metrics are reported at, with their prefixes: the full width unprefixed (null), then each Matryoshka
    /// dimension narrower than <paramref name="width"/> as <c>dim_{d}_</c>, as sentence-transformers' Matryoshka example
    /// names its evaluators (one per dimension with <c>truncate_dim</c> and name <c>dim_{d}</c>). A dimension equal to the
    /// full width would only repeat the unprefixed metrics, so it has none of its own.
    /// </summary>
    private static IEnumerable<(string Prefix, int? Dims)> Cuts(IReadOnlyList<int> dims, int width) =>
        dims.Where(d => d < width).Select(d => ($"dim_{d}_", (int?)d)).Prepend(("", null));

    /// <summary>
    /// Full-width embeddings cut to their first <paramref name="dims"/> components, in memory: the texts are embedded
    /// once for every dimension. The cut is not renormalised — both evaluators score by cosine, which ignores a vector's
    /// length — so the metrics are those of the embedder's own truncation (<c>truncate_dim</c>) up to float rounding.
    /// </summary>
    private static IReadOnlyList<float[]> Cut(IReadOnlyList<float[]> vectors, int? dims) => dims is { } d ? [.. vectors.Select(v => v[..d])] : vectors;

    /// <summary>
    /// Each text encoded as <see cref="TextEmbedder"/> encodes it (the tokenizer's special tokens, no prompt) and cut to
    /// <paramref name="maxLength"/> tokens by <see cref="TextEmbedder.Truncate"/>, keeping a final special token. A text that encodes to no tokens is an error naming its row and field.
    /// </summary>
    internal static (IReadOnlyList<EmbeddingItem> Items, TokenizationReport Report) Tokenize(IEnumerable<TrainingExample> examples,
        HfTokenizer tokenizer, int maxLength)
    {
        var rows = examples.Cast<EmbeddingPairExample>().ToList();
        var encoder = new TextEncoder(tokenizer, maxLength);
        var items = rows.Select(r => new EmbeddingItem(encoder.Encode(r, r.SourceFile, r.LineNumber, "anchor", r.Anchor),
            encoder.Encode(r, r.SourceFile, r.LineNumber, "positive", r.Positive),
            r.Negatives.Select((n, i) => encoder.Encode(r, r.SourceFile, r.LineNumber, i < r.NegativeFields.Count ? r.NegativeFields[i] : $"negative[{i}]", n)).ToArray())).ToList();
        var tokens = items.Sum(i => (long)i.Anchor.Length + i.Positive.Length + i.Negatives.Sum(n => n.Length));
        return (items, new TokenizationReport(rows.Count, items.Count, encoder.TruncatedRows, 0, 0, tokens, tokens));
    }

    /// <summary>Scored pairs encoded as <see cref="Tokenize"/> encodes texts.</summary>
    internal static (IReadOnlyList<ScoredPairItem> Items, TokenizationReport Report) TokenizeScored(IEnumerable<TrainingExample> examples,
        HfTokenizer tokenizer, int maxLength)
    {
        var rows = examples.Cast<ScoredPairExample>().ToList();
        var encoder = new TextEncoder(tokenizer, maxLength);
        var items = rows.Select(r => new ScoredPairItem(encoder.Encode(r, r.SourceFile, r.LineNumber, "sentence1", r.Sentence1),
            encoder.Encode(r, r.SourceFile, r.LineNumber, "sentence2", r.Sentence2), (float)r.Score)).ToList();
        var tokens = items.Sum(i => (long)i.First.Length + i.Second.Length);
        return (items, new TokenizationReport(rows.Count, items.Count, encoder.TruncatedRows, 0, 0, tokens, tokens));
    }

    /// <summary>Encodes texts for training, counting the rows that had a text cut.</summary>
    private sealed class TextEncoder(HfTokenizer tokenizer, int maxLength)
    {
        private readonly HashSet<TrainingExample> truncated = new(ReferenceEqualityComparer.Instance);

        public int TruncatedRows => truncated.Count;

        public int[] Encode(TrainingExample row, string file, long line, string field, string text)
        {
            var ids = tokenizer.Encode(text, addSpecialTokens: true);
            if (ids.Count == 0) throw new DataFormatException(file, line, field, "empty_field", "the text encodes to no tokens");
            if (ids.Count > maxLength) truncated.Add(row);
            return [.. TextEmbedder.Truncate(tokenizer, ids, maxLength)];
        }
    }

    /// <summary>
    /// EmbeddingSimilarityEvaluator's pearson_cosine and spearman_cosine on the validation pairs, logged with <c>val_</c>,
    /// and again for each Matryoshka dimension narrower than the embedding as <c>val_dim_{d}_spearman_cosine</c>, ….
    /// </summary>
    private sealed class CorrelationHook(TextEmbedder embedder, IReadOnlyList<ScoredPairExample> pairs, IReadOnlyList<int> dims) : IEvaluationHook
    {
        public IReadOnlyDictionary<string, double> Evaluate(int step) => Scores(embedder, pairs, dims, "val_");

        public static IReadOnlyDictionary<string, double> Scores(TextEmbedder embedder, IReadOnlyList<ScoredPairExample> pairs, IReadOnlyList<int> dims, string prefix)
        {
            var first = embedder.Embed(pairs.Select(p => p.Sentence1).ToList()).Vectors;
            var second = embedder.Embed(pairs.Select(p => p.Sentence2).ToList()).Vectors;
            var scores = pairs.Select(p => p.Score).ToList();
            return Cuts(dims, embedder.Dimensions).SelectMany(cut => SimilarityCorrelation.Score(Cut(first, cut.Dims), Cut(second, cut.Dims), scores)
                .Select(kv => KeyValuePair.Create(prefix + cut.Prefix + kv.Key, kv.Value))).ToDictionary();
        }
    }

    /// <summary>
    /// InformationRetrievalEvaluator's metrics on the validation pairs at each evaluation, logged as <c>val_cosine_ndcg@10</c>,
    /// …, and again for each Matryoshka dimension narrower than the embedding as <c>val_dim_{d}_cosine_ndcg@10</c>, ….
    /// </summary>
    private sealed class RetrievalHook(TextEmbedder embedder, RetrievalSet validation, IReadOnlyList<int> dims) : IEvaluationHook
    {
        public IReadOnlyDictionary<string, double> Evaluate(int step) => Scores(embedder, validation, dims, "val_");

        public static IReadOnlyDictionary<string, double> Scores(TextEmbedder embedder, RetrievalSet set, IReadOnlyList<int> dims, string prefix)
        {
            var (queries, corpus) = set.Embed(embedder, null, null);
            return Cuts(dims, embedder.Dimensions).SelectMany(cut => set.Score(Cut(queries, cut.Dims), Cut(corpus, cut.Dims))
                .Select(kv => KeyValuePair.Create(prefix + cut.Prefix + kv.Key, kv.Value))).ToDictionary();
        }
    }
}
