using System.Diagnostics;
using System.Globalization;
using SharpTune.Classification;
using SharpTune.Data;
using SharpTune.Data.Readers;
using SharpTune.Models;
using SharpTune.Tokenization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Evaluation;

/// <summary>Settings of a classifier, regressor or reward-model evaluation (<see cref="ClassifierEvaluation"/>).</summary>
public sealed record ClassifierEvaluationOptions
{
    /// <summary>
    /// How to read the head: sequence_classification, multi_label_classification, regression or reward
    /// (<see cref="TrainingTasks"/>' names); null = from the head's config (<see cref="ClassifierEvaluation.DetectTask"/>).
    /// </summary>
    public string? Task { get; init; }
    /// <summary>Texts per forward pass.</summary>
    public int BatchSize { get; init; } = 8;
    /// <summary>
    /// Most tokens per text (longer classification texts are cut, longer reward pairs left out, as in training); null = the
    /// model's context length (<see cref="ClassifierEvaluation.Run"/> first looks for the training run's max_seq_length,
    /// <see cref="ClassifierEvaluation.TrainedMaxLength"/>).
    /// </summary>
    public int? MaxLength { get; init; }
    /// <summary>Evaluate at most this many rows (the first ones; 0 = all).</summary>
    public int MaxExamples { get; init; }
}

/// <summary>
/// Evaluates a trained <c>*ForSequenceClassification</c> model (a classifier folder, or a base with a SEQ_CLS adapter) on
/// held-out rows in the format its training reads, scoring with <see cref="TextClassifier"/>: single-label heads get
/// accuracy, macro/micro/weighted F1, per-label precision/recall/F1 and the confusion matrix (<see cref="ClassificationMetrics"/>);
/// multi-label heads subset accuracy, F1 and Hamming loss (<see cref="MultiLabelMetrics"/>, labels over sigmoid 0.5);
/// regression heads MSE, MAE, RMSE, Pearson, Spearman and R² (<see cref="RegressionMetrics"/>); reward models pairwise
/// accuracy and margin over preference pairs (<see cref="RewardMetrics"/>).
/// </summary>
public static class ClassifierEvaluation
{
    /// <summary>The tasks a head can be evaluated as.</summary>
    public static IReadOnlyList<string> Tasks { get; } =
        [TrainingTasks.SequenceClassification, TrainingTasks.MultiLabelClassification, TrainingTasks.Regression, TrainingTasks.Reward];

    /// <summary>
    /// The task a head's config implies: a reward head (one output, no problem_type, as reward training writes it) is a
    /// reward model; otherwise its problem_type, inferred as transformers does when absent (one label: regression).
    /// </summary>
    public static string DetectTask(SequenceClassificationConfig head) =>
        head.IsRewardHead ? TrainingTasks.Reward : head.EffectiveProblemType switch
        {
            SequenceClassificationConfig.Regression => TrainingTasks.Regression,
            SequenceClassificationConfig.MultiLabelClassification => TrainingTasks.MultiLabelClassification,
            _ => TrainingTasks.SequenceClassification,
        };

    /// <summary><paramref name="requested"/> checked against the head (reward and regression read one output), or the detected task.</summary>
    public static string ResolveTask(SequenceClassificationConfig head, string? requested)
    {
        // A cross-encoder scores (query, document) pairs, which these evaluations do not read: its metrics are
        // CrossEncoderRerankingEvaluator's (RerankingReport, `sharptune rerank evaluate`). --head-task still overrides.
        if (requested is null && head.CrossEncoderActivation is not null)
            throw new ArgumentException("this head is a reranker (a cross-encoder: config.json's sentence_transformers block); " +
                                        "evaluate it on query/document rows with `sharptune rerank evaluate` (or give --head-task regression to read its texts as regression)");
        if (requested is null) return DetectTask(head);
        var task = requested.Trim().ToLowerInvariant();
        if (!Tasks.Contains(task))
            throw new ArgumentException($"task must be one of {string.Join(", ", Tasks)}, found '{requested}'");
        if (task is TrainingTasks.Reward or TrainingTasks.Regression && head.NumLabels != 1)
            throw new ArgumentException($"task {task} reads one output, but the head has {head.NumLabels} labels ({string.Join(", ", head.Labels)})");
        if (task == TrainingTasks.SequenceClassification && head.NumLabels < 2)
            throw new ArgumentException($"task {task} needs a head with at least two labels; this one has {head.NumLabels} (evaluate it as regression or reward)");
        return task;
    }

    /// <summary>Whether <paramref name="modelDir"/> is a *ForSequenceClassification folder or <paramref name="adapterDir"/> a SEQ_CLS adapter.</summary>
    public static bool IsClassifier(string modelDir, string? adapterDir) =>
        adapterDir is not null ? SequenceClassifierMerge.IsSequenceClassificationAdapter(adapterDir) : SequenceClassifier.ReadHeadConfig(modelDir) is not null;

    /// <summary>Loads the classifier (with its tokenizer and, for chat preference rows, its chat template) and evaluates <paramref name="dataPath"/>.</summary>
    /// <param name="chatTemplate">A built-in chat template name for conversational reward pairs; null = the tokenizer's own, if any.</param>
    public static EvaluationResult Run(string model, string? adapter, string dataPath, ClassifierEvaluationOptions options, ScalarType? dtype = null,
        string? chatTemplate = null, IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var modelDir = Hub.ModelLocator.Resolve(model);
        if (!IsClassifier(modelDir, adapter))
            throw new ArgumentException(adapter is null
                ? $"{modelDir}: not a classifier (config.json's architectures names no *ForSequenceClassification class); give its SEQ_CLS adapter with --adapter"
                : $"{adapter}: not a SEQ_CLS adapter (adapter_config.json's task_type is not SEQ_CLS)");
        var rows = new DatasetReader().Read(dataPath).ToList();
        if (rows.Count == 0) throw new InvalidDataException($"{dataPath}: no rows to evaluate");
        using var classifier = TextClassifier.Load(modelDir, adapter, dtype);
        var template = chatTemplate is not null ? ChatTemplate.BuiltIn(chatTemplate)
            : classifier.Tokenizer.ChatTemplate is not null ? ChatTemplate.FromTokenizer(classifier.Tokenizer) : null;
        options = options with { MaxLength = options.MaxLength ?? TrainedMaxLength(adapter ?? modelDir) };
        var name = adapter is null ? Path.GetFileName(Path.GetFullPath(modelDir).TrimEnd(Path.DirectorySeparatorChar)) : EvaluationCandidate.Parse(adapter).Name;
        return Evaluate(classifier, rows, options, template, name, progress, cancellationToken) with { Model = model, Adapter = adapter, Data = dataPath };
    }

    /// <summary>
    /// The max_seq_length the training run that wrote <paramref name="trainedDir"/> (its final, best or checkpoint folder)
    /// encoded with: <paramref name="trainedDir"/>'s own config.yaml, else (for final, best and checkpoint-N folders) the run
    /// folder's, where <see cref="FineTuneJob"/> saves it; null when there is none.
    /// </summary>
    public static int? TrainedMaxLength(string trainedDir)
    {
        var full = Path.GetFullPath(trainedDir).TrimEnd(Path.DirectorySeparatorChar);
        var config = Path.Combine(full, "config.yaml");
        // Only a run's own output folders look one level up, so a folder that merely sits next to some other config.yaml is not misread.
        var folder = Path.GetFileName(full);
        if (!File.Exists(config) && (folder is "final" or "best" || folder.StartsWith("checkpoint-", StringComparison.Ordinal)))
            config = Path.Combine(Path.GetDirectoryName(full)!, "config.yaml");
        return File.Exists(config) ? TrainingConfigFile.Load(config).MaxSeqLength : null;
    }

    /// <summary>Evaluates <paramref name="rows"/> (classification rows, or preference pairs for a reward model).</summary>
    public static EvaluationResult Evaluate(TextClassifier classifier, IReadOnlyList<DataRow> rows, ClassifierEvaluationOptions options,
        ChatTemplate? chatTemplate = null, string name = "model", IProgress<EvaluationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (rows.Count == 0) throw new ArgumentException("no rows to evaluate", nameof(rows));
        if (options.BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(options), options.BatchSize, "the batch size must be at least 1");
        var clock = Stopwatch.StartNew();
        if (options.MaxExamples > 0 && rows.Count > options.MaxExamples) rows = rows.Take(options.MaxExamples).ToList();
        var head = classifier.Classifier.Labels;
        var task = ResolveTask(head, options.Task);
        var contextLength = classifier.Classifier.Model.Config.ContextLength;
        // A run's saved max_seq_length may exceed the context (training lowered it to fit); more tokens than that cannot be read.
        var maxLength = Math.Min(options.MaxLength ?? contextLength, contextLength);
        if (maxLength < 1) throw new ArgumentOutOfRangeException(nameof(options), options.MaxLength, "the most tokens per text must be at least 1");
        var result = task == TrainingTasks.Reward
            ? EvaluatePairs(classifier, rows, chatTemplate, maxLength, options.BatchSize, progress, cancellationToken)
            : EvaluateRows(classifier, rows, task, maxLength, options.BatchSize, progress, cancellationToken);
        return result with { Name = name, Seconds = clock.Elapsed.TotalSeconds };
    }

    private static EvaluationResult EvaluateRows(TextClassifier classifier, IReadOnlyList<DataRow> rows, string task, int maxLength, int batchSize,
        IProgress<EvaluationProgress>? progress, CancellationToken cancellationToken)
    {
        var head = classifier.Classifier.Labels;
        var mapped = rows.Select(r => (r, (ClassificationExample)TrainingExampleMapper.Map(r, DatasetFormat.Classification))).ToList();
        var items = SequenceClassificationData.Tokenize(mapped, classifier.Tokenizer, head.Labels, TrainingTasks.ProblemType(task), maxLength, out var truncated);
        var texts = mapped.Select(m => m.Item2.Text).ToList();
        // The logits are read by the resolved task, not the head's own problem type, as transformers' pipeline reads them
        // under function_to_apply: a single-label head evaluated as multi-label gets sigmoid label sets, and the reverse softmax.
        var scores = ScoreInBatches(classifier, texts, items.Select(i => i.Ids).ToList(), batchSize, TrainingTasks.ProblemType(task), progress, cancellationToken);
        var signatures = new Dictionary<string, string> { ["task"] = Signature(task, head, maxLength, truncated) };
        var metrics = new Dictionary<string, double>();
        var records = new ExampleRecord[items.Count];
        ClassificationSummary? summary = null;
        IReadOnlyList<ClassMetrics>? perLabel = null;
        switch (task)
        {
            case TrainingTasks.Regression:
            {
                var gold = items.Select(i => (double)i.Target).ToArray();
                var predicted = scores.Select(s => (double)s.Score).ToArray();
                var m = RegressionMetrics.Compute(gold, predicted);
                (metrics["mse"], metrics["mae"], metrics["rmse"], metrics["pearson"], metrics["spearman"], metrics["r2"]) =
                    (m.Mse, m.Mae, m.Rmse, m.Pearson, m.Spearman, m.R2);
                for (var i = 0; i < items.Count; i++)
                    records[i] = new ExampleRecord(i, texts[i], Number(gold[i]), Number(predicted[i]),
                        new Dictionary<string, double> { ["prediction"] = predicted[i], ["error"] = predicted[i] - gold[i] });
                break;
            }
            case TrainingTasks.MultiLabelClassification:
            {
                var gold = items.Select(i => i.LabelVector!.Select(v => v > 0.5f).ToArray()).ToArray();
                var predicted = scores.Select(s => head.Labels.Select(l => s.PredictedLabels!.Contains(l)).ToArray()).ToArray();
                var m = MultiLabelMetrics.Compute(gold, predicted, head.Labels);
                metrics["subset_accuracy"] = m.SubsetAccuracy;
                metrics["hamming_loss"] = m.HammingLoss;
                metrics["micro_f1"] = m.Micro.F1;
                metrics["macro_f1"] = m.Macro.F1;
                metrics["weighted_f1"] = m.Weighted.F1;
                metrics["micro_precision"] = m.Micro.Precision;
                metrics["micro_recall"] = m.Micro.Recall;
                perLabel = [.. m.PerLabel, m.Micro, m.Macro, m.Weighted];
                for (var i = 0; i < items.Count; i++)
                    records[i] = new ExampleRecord(i, texts[i], LabelList(head.Labels, gold[i]), string.Join(", ", scores[i].PredictedLabels!),
                        Probabilities(head, scores[i], ("exact", gold[i].SequenceEqual(predicted[i]) ? 1 : 0)));
                break;
            }
            default:
            {
                var gold = items.Select(i => head.Labels[(int)i.ClassId]).ToArray();
                var predicted = scores.Select(s => s.Label!).ToArray();
                var m = ClassificationMetrics.Compute(gold, predicted, head.Labels);
                summary = ClassificationSummary.From(m, LabelMode.LogLikelihood) with { LabelMode = "head" };
                metrics["accuracy"] = m.Accuracy;
                metrics["macro_f1"] = m.Macro.F1;
                metrics["micro_f1"] = m.Micro.F1;
                metrics["weighted_f1"] = m.Weighted.F1;
                metrics["macro_precision"] = m.Macro.Precision;
                metrics["macro_recall"] = m.Macro.Recall;
                for (var i = 0; i < items.Count; i++)
                    records[i] = new ExampleRecord(i, texts[i], gold[i], predicted[i],
                        Probabilities(head, scores[i], ("correct", gold[i] == predicted[i] ? 1 : 0)));
                break;
            }
        }
        return new EvaluationResult("model", task, items.Count, metrics, signatures, summary, records) { PerLabel = perLabel };
    }

    private static EvaluationResult EvaluatePairs(TextClassifier classifier, IReadOnlyList<DataRow> rows, ChatTemplate? chatTemplate, int maxLength,
        int batchSize, IProgress<EvaluationProgress>? progress, CancellationToken cancellationToken)
    {
        var kept = new List<(PreferenceExample Example, RewardPair Pair)>();
        foreach (var row in rows)
        {
            var example = (PreferenceExample)TrainingExampleMapper.Map(row, DatasetFormat.Preference);
            if (!example.PlainText && chatTemplate is null)
                throw new DataFormatException(row.SourceFile, row.LineNumber, "prompt", "no_chat_template",
                    "a conversational pair is rendered with a chat template, and the tokenizer has none: give one (--chat-template)");
            var (pairs, _) = SequenceClassificationData.Tokenize([(row, example)], classifier.Tokenizer, chatTemplate, maxLength);
            if (pairs.Count == 1) kept.Add((example, pairs[0]));
        }
        if (kept.Count == 0) throw new InvalidDataException($"every pair is longer than {maxLength} tokens on one side; nothing to evaluate");
        // Chosen texts first, then rejected ones, scored alike (the ids already end in EOS, as RewardTrainer reads them).
        var answers = kept.Select(k => Answer(k.Example.Chosen)).Concat(kept.Select(k => Answer(k.Example.Rejected))).ToList();
        var scores = ScoreInBatches(classifier, answers, [.. kept.Select(k => k.Pair.Chosen), .. kept.Select(k => k.Pair.Rejected)],
            batchSize, SequenceClassificationConfig.Regression, progress, cancellationToken);
        var chosen = scores.Take(kept.Count).Select(s => (double)s.Score).ToArray();
        var rejected = scores.Skip(kept.Count).Select(s => (double)s.Score).ToArray();
        var m = RewardMetrics.Compute(chosen, rejected);
        var metrics = new Dictionary<string, double>
        {
            ["accuracy"] = m.Accuracy, ["strict_accuracy"] = m.StrictAccuracy, ["margin"] = m.MeanMargin,
            ["mean_chosen_reward"] = m.MeanChosen, ["mean_rejected_reward"] = m.MeanRejected, ["ties"] = m.Ties,
            ["pairs_dropped"] = rows.Count - kept.Count,
        };
        var records = kept.Select((k, i) => new ExampleRecord(i, k.Example.PromptText, answers[i], answers[kept.Count + i], new Dictionary<string, double>
        {
            ["chosen_reward"] = chosen[i], ["rejected_reward"] = rejected[i], ["margin"] = chosen[i] - rejected[i],
            ["correct"] = chosen[i] > rejected[i] ? 1 : 0,
        })).ToArray();
        var signatures = new Dictionary<string, string>
        {
            ["task"] = $"reward: accuracy as TRL's compute_accuracy (tied pairs left out; strict_accuracy counts them wrong), " +
                       $"margin = mean(chosen − rejected); texts end in EOS; pairs over {maxLength} tokens left out ({rows.Count - kept.Count})",
        };
        return new EvaluationResult("model", TrainingTasks.Reward, kept.Count, metrics, signatures, null, records);
    }

    /// <summary>Scores <paramref name="ids"/> one batch at a time, reporting rows done after each and stopping when cancelled.</summary>
    private static IReadOnlyList<TextScore> ScoreInBatches(TextClassifier classifier, IReadOnlyList<string> texts, IReadOnlyList<int[]> ids, int batchSize,
        string problemType, IProgress<EvaluationProgress>? progress, CancellationToken cancellationToken)
    {
        var scores = new List<TextScore>(ids.Count);
        progress?.Report(new EvaluationProgress("scoring", 0, ids.Count));
        for (var start = 0; start < ids.Count; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var count = Math.Min(batchSize, ids.Count - start);
            scores.AddRange(classifier.ScoreIds(texts.Skip(start).Take(count).ToList(), ids.Skip(start).Take(count).ToList(), batchSize, problemType));
            progress?.Report(new EvaluationProgress("scoring", scores.Count, ids.Count));
        }
        return scores;
    }

    private static string Signature(string task, SequenceClassificationConfig head, int maxLength, int truncated) =>
        task switch
        {
            TrainingTasks.Regression => "regression: the first logit against the numeric label; sklearn's MSE, MAE, R², SciPy's Pearson and Spearman (average ranks)",
            TrainingTasks.MultiLabelClassification => "multi_label_classification: labels with sigmoid > 0.5; sklearn's subset accuracy, Hamming loss, F1 (zero_division 0)",
            _ => "sequence_classification: the argmax label; sklearn's classification_report (zero_division 0)",
        } + $"; {head.NumLabels} outputs; texts cut to {maxLength} tokens ({truncated} cut)";

    private static IReadOnlyDictionary<string, double> Probabilities(SequenceClassificationConfig head, TextScore score, (string Name, double Value) outcome)
    {
        var scores = new Dictionary<string, double> { [outcome.Name] = outcome.Value };
        for (var i = 0; i < head.NumLabels; i++) scores["p_" + head.Labels[i]] = score.Probabilities![i];
        return scores;
    }

    private static string LabelList(IReadOnlyList<string> labels, bool[] set) => string.Join(", ", labels.Where((_, i) => set[i]));

    private static string Answer(IReadOnlyList<ChatTurn> turns) => string.Join("\n", turns.Select(t => t.Content));

    private static string Number(double value) => value.ToString("0.######", CultureInfo.InvariantCulture);
}
