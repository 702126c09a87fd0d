using SharpTune.Classification;
using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tokenization;
using TorchSharp;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// Sequence classification, regression and reward models within <see cref="FineTuneJob"/>
/// (<see cref="TrainingOptions.Task"/>): the decoder under a *ForSequenceClassification score head, the data's labels or
/// preference pairs, and <see cref="SequenceClassificationObjective"/> or <see cref="RewardModelObjective"/> on the common
/// trainer (schedules, accumulation, validation, early stopping, checkpoints with the head, resume). LoRA/DoRA runs save
/// PEFT's SEQ_CLS adapter (score whole under modules_to_save) beside <see cref="SequenceClassification.LabelsFileName"/>;
/// full runs a *ForSequenceClassification folder.
/// </summary>
internal static class SequenceClassificationRecipe
{
    /// <summary>PEFT's PeftModelForSequenceClassification adds these to every SEQ_CLS adapter's modules_to_save.</summary>
    public static IReadOnlyList<string> HeadModules { get; } = ["classifier", SequenceClassifier.ScoreModuleName];

    /// <summary>A data row kept beside its mapped example: errors found while tokenizing name the row's file and line.</summary>
    private sealed record ClassifierRow(DataRow Row, TrainingExample Example) : TrainingExample
    {
        public override DatasetFormat Format => Example.Format;
        public override string TrainingText => Example.TrainingText;
        public override string? Label => Example.Label;
    }

    /// <summary>How <paramref name="task"/> reads a row: the classification format, or a preference pair for reward.</summary>
    public static Func<DataRow, TrainingExample> RowMap(string task) => task switch
    {
        TrainingTasks.Reward => row => new ClassifierRow(row, TrainingExampleMapper.Map(row, DatasetFormat.Preference)),
        TrainingTasks.Reranking => RerankingExample.FromRow,
        _ => row => new ClassifierRow(row, TrainingExampleMapper.Map(row, DatasetFormat.Classification)),
    };

    /// <summary>
    /// The options a head task trains the adapter with: the SEQ_CLS task type and the head under modules_to_save, as
    /// PEFT's get_peft_model does for task_type SEQ_CLS.
    /// </summary>
    public static IReadOnlyList<string> ModulesToSave(TrainingOptions options) =>
        [.. HeadModules, .. FineTuningMethods.ParseNames(options.ModulesToSave).Except(HeadModules)];

    /// <summary>
    /// The classifier: a *ForSequenceClassification folder keeps its head and labels; a causal-LM folder gets a new
    /// head whose labels are the training and validation data's (ordinal order), one output for regression and reward.
    /// The pad id is the head's, else the tokenizer's pad, else its EOS (as TRL pads).
    /// </summary>
    public static SequenceClassifier LoadClassifier(TrainingOptions options, string task, string modelDir, ScalarType dtype, Device device,
        HfTokenizer tokenizer, IEnumerable<TrainingExample> examples)
    {
        var padId = tokenizer.PadTokenId ?? tokenizer.EosTokenId;
        var stored = SequenceClassifier.ReadHeadConfig(modelDir);
        var labels = task switch
        {
            TrainingTasks.Reward => stored ?? SequenceClassificationConfig.Reward(padId),
            TrainingTasks.Regression => stored ?? new SequenceClassificationConfig(["LABEL_0"], SequenceClassificationConfig.Regression, padId),
            // A stored one-output head (a reranker to train further) keeps its activation; without one it gets the default.
            TrainingTasks.Reranking => stored is null ? RerankingRecipe.NewHead(padId)
                : stored with { CrossEncoderActivation = stored.CrossEncoderActivation ?? CrossEncoderActivation.Sigmoid },
            _ => stored ?? new SequenceClassificationConfig(
                SequenceClassificationData.LabelSet(examples.Select(e => (ClassificationExample)((ClassifierRow)e).Example)),
                TrainingTasks.ProblemType(task), padId),
        };
        if (task is TrainingTasks.Reward or TrainingTasks.Reranking && labels.NumLabels != 1)
            throw new ArgumentException($"{modelDir}: a {(task == TrainingTasks.Reward ? "reward model" : "reranker")} has one output; this head has {labels.NumLabels}");
        if (task != TrainingTasks.Reward && labels.EffectiveProblemType != TrainingTasks.ProblemType(task))
            throw new ArgumentException($"{modelDir}: the head's problem type is {labels.EffectiveProblemType}, not task {task}'s");
        // The new head's initialisation is part of the run: the same seed gives the same head.
        manual_seed(options.Seed);
        return SequenceClassifier.Load(modelDir, labels with { PadTokenId = labels.PadTokenId ?? padId }, dtype, device);
    }

    /// <summary>
    /// QLoRA for a classifier, as PEFT + bitsandbytes run AutoModelForSequenceClassification with a quantization config:
    /// the decoder's linear layers quantized in place, layer by layer, and the score head left out (bitsandbytes skips
    /// the output module; PEFT then trains it whole under modules_to_save) and kept in fp32 like every head here.
    /// </summary>
    public static void QuantizeDecoder(SequenceClassifier classifier, Quantization.QuantizationOptions quantization)
    {
        Quantization.ModelQuantizer.Quantize(classifier.Model, quantization with { LmHead = false });
        classifier.Score.to(ScalarType.Float32);   // Quantize casts what it leaves to the compute dtype
    }

    /// <summary>Writes the trained classifier: the SEQ_CLS adapter and its labels, or the whole classifier folder.</summary>
    public static void Save(SequenceClassifier classifier, IPeftAdapter? adapter, string dir, string modelDir)
    {
        if (adapter is null)
        {
            classifier.Save(dir);
            return;
        }
        PeftAdapters.Save(adapter, dir, Path.GetFullPath(modelDir));
        SequenceClassification.WriteLabels(classifier.Labels, Path.Combine(dir, SequenceClassification.LabelsFileName));
    }

    public static FineTuneResult Run(RecipeContext context, SequenceClassifier classifier, string task, HfTokenizer tokenizer,
        ChatTemplate? chatTemplate, IReadOnlyList<TrainingExample> train, IReadOnlyList<TrainingExample> validation,
        IReadOnlyList<TrainingExample> test, ParameterSummary parameters)
    {
        if (task == TrainingTasks.Reranking)
            return RerankingRecipe.Run(context, classifier, tokenizer, train, validation, test, parameters);
        var options = context.Options;
        var pad = classifier.Labels.PadTokenId;
        if (task == TrainingTasks.Reward)
        {
            var reward = new Trainer(context.Model, context.Trainable, options, context.SaveModel,
                new RewardModelObjective(classifier, options.CenterRewardsCoefficient));
            return context.Run(reward, examples => TokenizePairs(examples, tokenizer, chatTemplate, options.MaxSeqLength),
                train, validation, test, (pairs, device) => ClassifierCollator.Reward(pairs, pad, device), parameters);
        }

        var regression = task == TrainingTasks.Regression;
        var problemType = TrainingTasks.ProblemType(task);
        IReadOnlyList<ClassificationItem> Tokenize(IEnumerable<TrainingExample> examples) =>
            TokenizeRows(examples, tokenizer, classifier.Labels.Labels, problemType, options.MaxSeqLength).Items;
        // Classification's F1 is not a mean over rows, so it comes from a hook at each evaluation and after training.
        var hook = regression || validation.Count == 0 ? null : new F1Hook(classifier, Tokenize(validation), options.MicroBatchSize);
        var trainer = new Trainer(context.Model, context.Trainable, options, context.SaveModel, new SequenceClassificationObjective(classifier), hook);
        var result = context.Run(trainer, examples => TokenizeRows(examples, tokenizer, classifier.Labels.Labels, problemType, options.MaxSeqLength),
            train, validation, test, (items, device) => ClassifierCollator.Classification(items, pad, regression, device), parameters);
        if (regression || test.Count == 0 || result.TestMetrics is null) return result;
        var f1 = F1Hook.Scores(classifier, Tokenize(test), options.MicroBatchSize, prefix: "");
        return result with { TestMetrics = result.TestMetrics.Concat(f1).ToDictionary() };
    }

    private static (IReadOnlyList<ClassificationItem> Items, TokenizationReport Report) TokenizeRows(IEnumerable<TrainingExample> examples,
        HfTokenizer tokenizer, IReadOnlyList<string> labels, string problemType, int maxLength)
    {
        var rows = examples.Cast<ClassifierRow>().Select(r => (r.Row, (ClassificationExample)r.Example)).ToList();
        var items = SequenceClassificationData.Tokenize(rows, tokenizer, labels, problemType, maxLength, out var truncated);
        return (items, new TokenizationReport(rows.Count, items.Count, truncated, 0, 0, items.Sum(i => (long)i.Ids.Length), items.Count));
    }

    private static (IReadOnlyList<RewardPair> Pairs, TokenizationReport Report) TokenizePairs(IEnumerable<TrainingExample> examples,
        HfTokenizer tokenizer, ChatTemplate? chatTemplate, int maxLength)
    {
        var rows = examples.Cast<ClassifierRow>().Select(r => (r.Row, (PreferenceExample)r.Example)).ToList();
        var (pairs, dropped) = SequenceClassificationData.Tokenize(rows, tokenizer, chatTemplate, maxLength);
        RequireMarginsEverywhereOrNowhere(pairs);
        return (pairs, new TokenizationReport(rows.Count, pairs.Count, 0, dropped, 0,
            pairs.Sum(p => (long)p.Chosen.Length + p.Rejected.Length), pairs.Count));
    }

    private static void RequireMarginsEverywhereOrNowhere(IReadOnlyList<RewardPair> pairs)
    {
        if (pairs.Count == 0) return;
        var withMargin = pairs[0].Margin is not null;
        if (pairs.FirstOrDefault(p => (p.Margin is not null) != withMargin) is { } odd)
            throw new DataFormatException(odd.SourceFile, odd.LineNumber,
                "margin", withMargin ? "missing_field" : "unexpected_field",
                "every pair must carry a margin once one does (TRL's margin column), or none may");
    }

    /// <summary>
    /// Classification's macro and weighted F1 (<see cref="Evaluation.ClassificationMetrics"/>; for a multi-label head
    /// <see cref="Evaluation.MultiLabelMetrics"/>' and its micro F1 and Hamming loss) on held-out rows, dropout off.
    /// </summary>
    private sealed class F1Hook(SequenceClassifier classifier, IReadOnlyList<ClassificationItem> validation, int batchSize) : IEvaluationHook
    {
        public IReadOnlyDictionary<string, double> Evaluate(int step) => Scores(classifier, validation, batchSize, prefix: "val_");

        public static IReadOnlyDictionary<string, double> Scores(SequenceClassifier classifier, IReadOnlyList<ClassificationItem> items,
            int batchSize, string prefix)
        {
            if (items.Count == 0) return new Dictionary<string, double>();
            var wasTraining = classifier.Model.training;
            classifier.Model.eval();
            try
            {
                var metrics = SequenceClassification.Evaluate(classifier, items, batchSize);
                // A multi-label head also has micro F1 and the Hamming loss (its accuracy, subset accuracy, the objective logs).
                return new[] { "macro_f1", "weighted_f1", "micro_f1", "hamming_loss" }.Where(metrics.ContainsKey)
                    .ToDictionary(name => prefix + name, name => metrics[name]);
            }
            finally { if (wasTraining) classifier.Model.train(); }
        }
    }
}
