using System.Diagnostics;
using SharpTune.Data;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Evaluation;

/// <summary>
/// Evaluates a model (with its adapter, tokenizer and training chat template) on held-out examples: token-weighted
/// perplexity with the training loss mask; BLEU, chrF, ROUGE and exact match of greedy outputs against the references;
/// and for classification data accuracy, per-class precision/recall/F1 and the confusion matrix, with labels predicted
/// by label-option log-likelihood or by generation.
/// </summary>
public sealed class ModelEvaluator
{
    private readonly CausalLanguageModel model;
    private readonly HfTokenizer tokenizer;
    private readonly ChatTemplate? chatTemplate;
    private readonly EvaluationOptions options;

    /// <summary>Evaluates <paramref name="model"/> encoding text with <paramref name="tokenizer"/> and chats with <paramref name="chatTemplate"/>.</summary>
    public ModelEvaluator(CausalLanguageModel model, HfTokenizer tokenizer, ChatTemplate? chatTemplate, EvaluationOptions? options = null)
    {
        this.model = model;
        this.tokenizer = tokenizer;
        this.options = options ?? new EvaluationOptions();
        this.chatTemplate = this.options.ChatTemplateKwargs is { } arguments && chatTemplate is not null
            ? chatTemplate.WithArguments(ChatTemplateArguments.Merge(chatTemplate.Arguments, arguments))
            : chatTemplate;
        EvaluationMetrics.Validate(this.options.Metrics);
    }

    /// <summary>Evaluates a loaded model; its stored chat template (adapter's, else tokenizer's) renders chats.</summary>
    public ModelEvaluator(LoadedModel loaded, EvaluationOptions? options = null)
        : this(loaded.Model, loaded.RequireTokenizer(), loaded.ChatTemplate, options) { }

    /// <summary>The metrics evaluated when none are requested: everything that applies to the format.</summary>
    public static IReadOnlyList<string> DefaultMetrics(DatasetFormat format) => format switch
    {
        DatasetFormat.Classification => [EvaluationMetrics.Accuracy],
        DatasetFormat.Text => [EvaluationMetrics.Perplexity],
        _ => [EvaluationMetrics.Perplexity, .. EvaluationMetrics.Generation],
    };

    /// <summary>Evaluates <paramref name="examples"/> (all of one format) and returns metrics and per-example records.</summary>
    public EvaluationResult Evaluate(IReadOnlyList<TrainingExample> examples, string name = "model",
        IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (examples.Count == 0) throw new ArgumentException("no examples to evaluate", nameof(examples));
        var clock = Stopwatch.StartNew();
        if (options.MaxExamples > 0 && examples.Count > options.MaxExamples) examples = examples.Take(options.MaxExamples).ToArray();
        var format = examples[0].Format;
        if (examples.FirstOrDefault(e => e.Format != format) is { } other)
            throw new ArgumentException($"examples mix formats ({format} and {other.Format}); evaluate one format at a time", nameof(examples));
        var metrics = options.Metrics.Count > 0 ? options.Metrics : DefaultMetrics(format);
        CheckApplicable(metrics, format);

        var items = examples.Select(e => EvaluationItem.From(e, tokenizer, chatTemplate)).ToArray();
        var scores = items.Select(_ => new Dictionary<string, double>()).ToArray();
        var outputs = new string?[items.Length];
        var corpus = new Dictionary<string, double>();
        var signatures = new Dictionary<string, string>();
        ClassificationSummary? classification = null;
        IReadOnlyDictionary<string, double>?[] labelScores = new IReadOnlyDictionary<string, double>?[items.Length];

        if (metrics.Contains(EvaluationMetrics.Perplexity))
            corpus[EvaluationMetrics.Perplexity] = Perplexity(examples, scores, progress, cancellationToken);

        var generation = metrics.Intersect(EvaluationMetrics.Generation).ToArray();
        if (format == DatasetFormat.Classification && (metrics.Contains(EvaluationMetrics.Accuracy) || generation.Length > 0))
        {
            var labels = options.Labels ?? items.Select(i => i.GoldLabel!).Distinct().Order(StringComparer.Ordinal).ToArray();
            string[] predicted;
            if (options.LabelMode == LabelMode.LogLikelihood)
            {
                var pairs = items.Length * labels.Count;   // every label is scored after every text
                progress?.Report(new EvaluationProgress("labelling", 0, pairs));
                var results = new LabelScorer(model, tokenizer, options.BatchSize)
                    .ScoreAll(items.Select(i => ((ClassificationExample)i.Example).Text).ToArray(), labels,
                        done => progress?.Report(new EvaluationProgress("labelling", done, pairs)), cancellationToken);
                predicted = results.Select(r => r.Best).ToArray();
                for (var i = 0; i < items.Length; i++) labelScores[i] = results[i].LogLikelihoods;
            }
            else
            {
                var maxLabelTokens = labels.Max(l => tokenizer.Encode(PromptFormats.ClassificationAnswer(l)).Count);
                predicted = Generate(items, maxLabelTokens + 2, progress, cancellationToken).Select(o => o.Trim()).ToArray();
            }
            for (var i = 0; i < items.Length; i++)
            {
                outputs[i] = predicted[i];
                scores[i]["correct"] = predicted[i] == items[i].GoldLabel ? 1 : 0;
            }
            var gold = items.Select(i => i.GoldLabel!).ToArray();
            var classMetrics = ClassificationMetrics.Compute(gold, predicted, labels);
            classification = ClassificationSummary.From(classMetrics, options.LabelMode);
            corpus[EvaluationMetrics.Accuracy] = classMetrics.Accuracy;
            corpus["macro_f1"] = classMetrics.Macro.F1;
            corpus["micro_f1"] = classMetrics.Micro.F1;
            corpus["weighted_f1"] = classMetrics.Weighted.F1;
            if (generation.Contains(EvaluationMetrics.ExactMatch))
                AddGenerationMetrics([EvaluationMetrics.ExactMatch], items.Select(i => i.Reference).ToList(), predicted, options.RougeStemmer, scores, corpus, signatures);
        }
        else if (generation.Length > 0)
        {
            var generated = Generate(items, options.MaxNewTokens, progress, cancellationToken);
            for (var i = 0; i < items.Length; i++) outputs[i] = generated[i];
            AddGenerationMetrics(generation, items.Select(i => i.Reference).ToList(), generated, options.RougeStemmer, scores, corpus, signatures);
        }

        var records = items.Select((item, i) => new ExampleRecord(i, item.Input, item.Reference, outputs[i], scores[i])
            { LabelLogLikelihoods = labelScores[i] }).ToArray();
        return new EvaluationResult(name, format.ToString().ToLowerInvariant(), items.Length, corpus, signatures, classification, records)
            { Seconds = clock.Elapsed.TotalSeconds };
    }

    /// <summary>
    /// Scores multiple-choice questions as lm-evaluation-harness does (output_type multiple_choice, zero-shot, no chat
    /// template): every choice's log-likelihood as the continuation <see cref="EvaluationOptions.TargetDelimiter"/> +
    /// choice after the context; <c>acc</c>, <c>acc_norm</c> (log-likelihood per character) and, when asked,
    /// <c>exact_match</c> (a gold choice is the greedy continuation), each averaged with its standard error
    /// (<c>acc_stderr</c>, …). The adapter, if any, is whatever the model carries.
    /// </summary>
    public EvaluationResult EvaluateMultipleChoice(IReadOnlyList<MultipleChoiceItem> items, string name = "model",
        IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (items.Count == 0) throw new ArgumentException("no questions to evaluate", nameof(items));
        var clock = Stopwatch.StartNew();
        if (options.MaxExamples > 0 && items.Count > options.MaxExamples) items = items.Take(options.MaxExamples).ToArray();
        var metrics = options.Metrics.Count > 0 ? options.Metrics : [EvaluationMetrics.Acc, EvaluationMetrics.AccNorm];
        if (metrics.FirstOrDefault(m => !EvaluationMetrics.MultipleChoice.Contains(m)) is { } other)
            throw new ArgumentException($"'{other}' does not apply to multiple-choice data; use {string.Join(", ", EvaluationMetrics.MultipleChoice)}");

        // Progress counts choices: each is one scored sequence, and questions may have different numbers of them.
        var choices = items.Sum(item => item.Choices.Count);
        progress?.Report(new EvaluationProgress("scoring choices", 0, choices));
        var choiceScores = new MultipleChoiceScorer(model, tokenizer, options.BatchSize).ScoreChoices(items, options.TargetDelimiter,
            done => progress?.Report(new EvaluationProgress("scoring choices", done, choices)), cancellationToken);

        var perMetric = metrics.ToDictionary(m => m, _ => new double[items.Count]);
        var records = new ExampleRecord[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            var (item, scored) = (items[i], choiceScores[i]);
            var outcome = MultipleChoiceMetrics.Score(item.Choices, scored.Select(c => c.LogLikelihood).ToArray(), scored.Select(c => c.IsGreedy).ToArray(), item.Gold);
            var all = new Dictionary<string, double>
            {
                [EvaluationMetrics.Acc] = outcome.Acc, [EvaluationMetrics.AccNorm] = outcome.AccNorm, [EvaluationMetrics.ExactMatch] = outcome.ExactMatch,
            };
            var exampleScores = metrics.ToDictionary(m => m, m => all[m]);
            foreach (var (metric, value) in exampleScores) perMetric[metric][i] = value;
            records[i] = new ExampleRecord(i, item.Context, string.Join(" | ", item.Gold.Select(g => item.Choices[g])), item.Choices[outcome.Predicted], exampleScores)
            {
                Choices = scored.Select((c, k) => new ChoiceScore(item.Choices[k], c.LogLikelihood, c.Tokens, c.IsGreedy)).ToArray(),
                Gold = item.Gold,
            };
        }
        var corpus = new Dictionary<string, double>();
        foreach (var (metric, values) in perMetric)
        {
            corpus[metric] = MultipleChoiceMetrics.Mean(values);
            corpus[metric + "_stderr"] = MultipleChoiceMetrics.MeanStderr(values);
        }
        var signatures = new Dictionary<string, string>
        {
            ["multiple_choice"] = $"lm-evaluation-harness multiple_choice, zero-shot, no chat template, target delimiter {System.Text.Json.JsonSerializer.Serialize(options.TargetDelimiter)}, acc_norm per character",
        };
        return new EvaluationResult(name, "multiple_choice", items.Count, corpus, signatures, null, records) { Seconds = clock.Elapsed.TotalSeconds };
    }

    private static void CheckApplicable(IReadOnlyList<string> metrics, DatasetFormat format)
    {
        if (format == DatasetFormat.Preference)
            throw new ArgumentException("preference pairs have no single reference to evaluate against; evaluate the chosen answers as chat or completion data");
        if (format == DatasetFormat.Text && metrics.FirstOrDefault(m => m != EvaluationMetrics.Perplexity) is { } needsReference)
            throw new ArgumentException($"'{needsReference}' needs references, but text data has none; use perplexity");
        if (metrics.FirstOrDefault(m => m is EvaluationMetrics.Acc or EvaluationMetrics.AccNorm) is { } multipleChoice)
            throw new ArgumentException($"'{multipleChoice}' scores multiple-choice data (--task-format), but the data is {format.ToString().ToLowerInvariant()}");
        if (format != DatasetFormat.Classification && metrics.Contains(EvaluationMetrics.Accuracy))
            throw new ArgumentException($"'accuracy' needs classification data ({{text, label}}), but the data is {format.ToString().ToLowerInvariant()}; use exact_match");
        if (format == DatasetFormat.Classification && metrics.FirstOrDefault(m => m is EvaluationMetrics.Bleu or EvaluationMetrics.Chrf or EvaluationMetrics.Rouge) is { } textMetric)
            throw new ArgumentException($"'{textMetric}' compares texts; classification data is scored with accuracy (and exact_match)");
    }

    private double Perplexity(IReadOnlyList<TrainingExample> examples, Dictionary<string, double>[] scores, IProgress<EvaluationProgress>? progress,
        CancellationToken cancellationToken)
    {
        progress?.Report(new EvaluationProgress("scoring", 0, examples.Count));
        var maxLength = model.Config.ContextLength;
        var sft = new SftTokenizer(tokenizer, chatTemplate, maxLength, truncate: true, completionOnlyLoss: true);
        var tokenized = examples.Select(e =>
        {
            var t = sft.Tokenize(e);
            return t.Length <= maxLength ? t : new TokenizedExample(t.InputIds[..maxLength], t.Supervised[..maxLength]);
        }).ToArray();
        var sequenceScores = SequenceScorer.Score(model, tokenized, options.BatchSize,
            done => progress?.Report(new EvaluationProgress("scoring", done, examples.Count)), cancellationToken);
        for (var i = 0; i < scores.Length; i++)
        {
            scores[i]["log_prob"] = sequenceScores[i].LogProbSum;
            scores[i]["tokens"] = sequenceScores[i].Tokens;
            scores[i][EvaluationMetrics.Perplexity] = sequenceScores[i].Perplexity;
        }
        return SequenceScorer.CorpusPerplexity(sequenceScores);
    }

    private string[] Generate(IReadOnlyList<EvaluationItem> items, int maxNewTokens, IProgress<EvaluationProgress>? progress, CancellationToken cancellationToken)
    {
        var generator = new TextGenerator(model, tokenizer);
        var generationOptions = new GenerationOptions { MaxNewTokens = maxNewTokens, Temperature = 0, Overflow = ContextOverflow.TruncatePromptLeft };
        var outputs = new string[items.Count];
        var wasTraining = model.training;
        model.eval();
        try
        {
            for (var start = 0; start < items.Count; start += options.BatchSize)
            {
                progress?.Report(new EvaluationProgress("generating", start, items.Count));
                var chunk = items.Skip(start).Take(options.BatchSize).ToArray();
                var completions = generator.GenerateFromIds(chunk.Select(c => c.PromptIds!).ToArray(), generationOptions, cancellationToken: cancellationToken);
                for (var k = 0; k < chunk.Length; k++) outputs[start + k] = completions[k].Text;
            }
        }
        finally
        {
            if (wasTraining) model.train();
        }
        progress?.Report(new EvaluationProgress("generating", items.Count, items.Count));
        return outputs;
    }

    /// <summary>
    /// Corpus scores, signatures and per-example scores of generated <paramref name="outputs"/> against
    /// <paramref name="references"/>. Per-example BLEU is sacreBLEU's <c>sentence_bleu</c>, which uses the effective
    /// order by default (a short output is not zeroed for lacking 4-grams); corpus BLEU keeps sacreBLEU's defaults.
    /// </summary>
    internal static void AddGenerationMetrics(IReadOnlyList<string> metrics, IReadOnlyList<string?> references, IReadOnlyList<string> outputs,
        bool rougeStemmer, Dictionary<string, double>[] scores, Dictionary<string, double> corpus, Dictionary<string, string> signatures)
    {
        // Texts are compared without surrounding whitespace: a completion's leading space is tokenisation, not content.
        var hypotheses = outputs.Select(o => o.Trim()).ToArray();
        var refs = references.Select(r => (r ?? "").Trim()).ToArray();
        if (metrics.Contains(EvaluationMetrics.Bleu))
        {
            var bleu = new Bleu();
            var score = bleu.CorpusScore(hypotheses, [refs]);
            corpus[EvaluationMetrics.Bleu] = score.Score;
            signatures[EvaluationMetrics.Bleu] = score.Signature;
            var sentenceBleu = new Bleu(new BleuOptions { EffectiveOrder = true });
            for (var i = 0; i < references.Count; i++) scores[i][EvaluationMetrics.Bleu] = sentenceBleu.SentenceScore(hypotheses[i], [refs[i]]).Score;
        }
        if (metrics.Contains(EvaluationMetrics.Chrf))
        {
            var chrf = new Chrf();
            var score = chrf.CorpusScore(hypotheses, [refs]);
            corpus[EvaluationMetrics.Chrf] = score.Score;
            signatures[EvaluationMetrics.Chrf] = score.Signature;
            for (var i = 0; i < references.Count; i++) scores[i][EvaluationMetrics.Chrf] = chrf.SentenceScore(hypotheses[i], [refs[i]]).Score;
        }
        if (metrics.Contains(EvaluationMetrics.Rouge))
        {
            var rouge = new Rouge(useStemmer: rougeStemmer);
            var pairs = rouge.ScoreAll(refs, hypotheses);
            foreach (var (type, score) in RougeAggregate.Mean(pairs)) corpus[type] = score.FMeasure;
            for (var i = 0; i < references.Count; i++)
                foreach (var (type, score) in pairs[i]) scores[i][type] = score.FMeasure;
            signatures[EvaluationMetrics.Rouge] = $"rouge-score tokenisation, F-measure, stemmer: {(rougeStemmer ? "yes" : "no")}";
        }
        if (metrics.Contains(EvaluationMetrics.ExactMatch))
        {
            corpus[EvaluationMetrics.ExactMatch] = ExactMatch.Score(hypotheses, refs);
            for (var i = 0; i < references.Count; i++) scores[i][EvaluationMetrics.ExactMatch] = ExactMatch.Normalized(hypotheses[i], refs[i]) ? 1 : 0;
            signatures[EvaluationMetrics.ExactMatch] = "SQuAD normalisation (lowercase, no punctuation or articles)";
        }
    }
}
