using SharpTune.Classification;
using SharpTune.Data;
using SharpTune.Evaluation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tokenization;
using SharpTune.Training.Objectives;

namespace SharpTune.Training;

/// <summary>
/// Cross-encoders (rerankers) within <see cref="FineTuneJob"/> (<c>task: reranking</c>), as sentence-transformers'
/// CrossEncoderTrainer trains one with BinaryCrossEntropyLoss: each (query, document) pair encoded together
/// (<see cref="HfTokenizer.EncodePair"/>, cut to max_seq_length longest-first), a one-output score head, the loss
/// against the pair's relevance, on the common trainer (schedules, accumulation, validation, early stopping, checkpoints
/// with the head, resume). Validation adds CrossEncoderRerankingEvaluator's metrics (<see cref="RerankingEvaluator"/>).
/// The head is saved as the other head tasks save theirs (SEQ_CLS adapter or *ForSequenceClassification folder), with
/// the sigmoid activation in the sentence_transformers block sentence-transformers v4 writes.
/// </summary>
internal static class RerankingRecipe
{
    /// <summary>A new reranker head: one output, sentence-transformers' default sigmoid for scoring.</summary>
    public static SequenceClassificationConfig NewHead(int? padId) =>
        new(["LABEL_0"], null, padId) { CrossEncoderActivation = CrossEncoderActivation.Sigmoid };

    public static FineTuneResult Run(RecipeContext context, SequenceClassifier classifier, HfTokenizer tokenizer,
        IReadOnlyList<TrainingExample> train, IReadOnlyList<TrainingExample> validation, IReadOnlyList<TrainingExample> test, ParameterSummary parameters)
    {
        var options = context.Options;
        CheckPairLayout(tokenizer, options);
        var pad = classifier.Labels.PadTokenId;
        // Validation scores pairs as the rows were cut for training; a max_seq_length past the context cannot be scored whole.
        var reranker = new Reranker(new TextClassifier(classifier, tokenizer), Math.Min(options.MaxSeqLength, context.Model.Config.ContextLength));
        var hook = validation.Count == 0 ? null : new RerankingHook(reranker, RerankingEvaluator.FromExamples(validation.Cast<RerankingExample>()), options.MicroBatchSize);
        var trainer = new Trainer(context.Model, context.Trainable, options, context.SaveModel, new RerankingObjective(classifier, options.PosWeight), hook);
        var result = context.Run(trainer, examples => Tokenize(examples, tokenizer, options.MaxSeqLength), train, validation, test,
            (items, device) => ClassifierCollator.Classification(items, pad, regression: true, device), parameters);
        if (test.Count == 0 || result.TestMetrics is null) return result;
        var ranking = RerankingHook.Scores(reranker, RerankingEvaluator.FromExamples(test.Cast<RerankingExample>()), options.MicroBatchSize, prefix: "");
        return result with { TestMetrics = result.TestMetrics.Concat(ranking).ToDictionary() };
    }

    /// <summary>
    /// Refuses, before any row is read, a tokenizer that cannot lay out a pair and a max_seq_length that leaves no room
    /// for text beside the pair's special tokens (each pair would otherwise fail, or be all special tokens).
    /// </summary>
    internal static void CheckPairLayout(HfTokenizer tokenizer, TrainingOptions options)
    {
        int special;
        try { special = tokenizer.EncodePair("", "", addSpecialTokens: true).Count; }
        catch (NotSupportedException e)
        {
            throw new NotSupportedException($"{Path.Combine(options.Model, "tokenizer.json")}: task reranking encodes (query, document) pairs, but {e.Message}", e);
        }
        if (options.MaxSeqLength <= special)
            throw new ArgumentException($"max_seq_length (--max-seq-length) must exceed the {special} special tokens the tokenizer adds to a (query, document) pair, found {options.MaxSeqLength}");
    }

    /// <summary>Each (query, document) pair of each row as the reranker encodes it, with its relevance as the target.</summary>
    internal static (IReadOnlyList<ClassificationItem> Items, TokenizationReport Report) Tokenize(IEnumerable<TrainingExample> examples,
        HfTokenizer tokenizer, int maxLength)
    {
        var rows = examples.Cast<RerankingExample>().ToList();
        var items = new List<ClassificationItem>();
        var truncated = 0;
        foreach (var row in rows)
        {
            var cut = false;
            foreach (var candidate in row.Candidates)
            {
                var whole = tokenizer.EncodePair(row.Query, candidate.Document, addSpecialTokens: true);
                if (whole.Count == 0)
                    throw new DataFormatException(row.SourceFile, row.LineNumber, candidate.Field, "empty_field", "the pair encodes to no tokens");
                int[] ids = whole.Count <= maxLength ? [.. whole] : [.. tokenizer.EncodePair(row.Query, candidate.Document, addSpecialTokens: true, maxLength)];
                cut |= ids.Length < whole.Count;
                items.Add(new ClassificationItem(ids, 0, (float)candidate.Label, $"{row.SourceFile}:{row.LineNumber}"));
            }
            if (cut) truncated++;
        }
        var tokens = items.Sum(i => (long)i.Ids.Length);
        return (items, new TokenizationReport(rows.Count, rows.Count, truncated, 0, 0, tokens, items.Count));
    }

    /// <summary>CrossEncoderRerankingEvaluator's metrics on held-out queries, dropout off, logged with <c>val_</c>.</summary>
    private sealed class RerankingHook(Reranker reranker, IReadOnlyList<RerankingSample> samples, int batchSize) : IEvaluationHook
    {
        public IReadOnlyDictionary<string, double> Evaluate(int step) => Scores(reranker, samples, batchSize, prefix: "val_");

        public static IReadOnlyDictionary<string, double> Scores(Reranker reranker, IReadOnlyList<RerankingSample> samples, int batchSize, string prefix)
        {
            if (samples.Count == 0) return new Dictionary<string, double>();
            var model = reranker.Classifier.Classifier.Model;
            var wasTraining = model.training;
            model.eval();
            try
            {
                return RerankingEvaluator.Evaluate(reranker, samples, batchSize: batchSize).ToDictionary(kv => prefix + kv.Key, kv => kv.Value);
            }
            finally { if (wasTraining) model.train(); }
        }
    }
}
