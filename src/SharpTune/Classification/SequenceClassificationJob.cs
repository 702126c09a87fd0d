using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Data;
using SharpTune.Evaluation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tokenization;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Classification;

/// <summary>The outcome of a sequence-classification or reward run.</summary>
/// <param name="StepLosses">The training loss of every optimizer step.</param>
/// <param name="Validation">Held-out metrics: classification accuracy, macro_f1, weighted_f1; regression mse; reward
/// accuracy (chosen &gt; rejected, TRL's metric) and margin; every task its loss.</param>
/// <param name="Labels">The head's labels.</param>
/// <param name="OutputDirectory">The adapter folder (LoRA) or the model folder (full).</param>
public sealed record SequenceClassificationResult(IReadOnlyList<double> StepLosses, IReadOnlyDictionary<string, double> Validation,
    SequenceClassificationConfig Labels, string OutputDirectory);

/// <summary>
/// Trains a <see cref="SequenceClassifier"/> end to end: classification (cross-entropy), regression (MSE) as transformers'
/// Trainer does over *ForSequenceClassification, or a reward model as TRL's RewardTrainer does (num_labels 1, pairwise
/// loss, centring). LoRA runs are saved as PEFT saves a SEQ_CLS adapter (score whole under modules_to_save) beside
/// <see cref="LabelsFileName"/>; full runs as a *ForSequenceClassification folder.
/// </summary>
public static class SequenceClassificationJob
{
    /// <summary>
    /// Beside a SEQ_CLS adapter: the head's config.json fields (num_labels, id2label, label2id, problem_type,
    /// pad_token_id), which PEFT leaves to the caller of AutoModelForSequenceClassification.from_pretrained.
    /// </summary>
    public const string LabelsFileName = "classification_config.json";

    public static SequenceClassificationResult Run(SequenceClassificationOptions options, IProgress<(int Step, int Steps, double Loss)>? progress = null)
    {
        var task = options.Task.Trim().ToLowerInvariant();
        if (!SequenceClassificationOptions.Tasks.Contains(task))
            throw new ArgumentException($"unknown task '{options.Task}' (choose one of: {string.Join(", ", SequenceClassificationOptions.Tasks)})");
        if (options.CenterRewardsCoefficient is not null && task != "reward")
            throw new ArgumentException("center_rewards_coefficient applies to the reward task only");
        var method = options.Method.Trim().ToLowerInvariant();
        if (method is not ("lora" or "full")) throw new ArgumentException($"method '{options.Method}' is not available for {task}; choose lora or full");
        Runtime.TorchRuntime.EnsureInitialised();
        torch.manual_seed(options.Seed);
        var modelDir = Hub.ModelLocator.Resolve(options.Model);
        var tokenizer = HfTokenizer.FromDirectory(modelDir);
        var padId = tokenizer.PadTokenId ?? tokenizer.EosTokenId;   // TRL: pad_token, else eos_token
        var stored = SequenceClassifier.ReadHeadConfig(modelDir);

        // Data and the head's labels.
        IReadOnlyList<ClassificationItem> train = [], validation = [];
        IReadOnlyList<RewardPair> trainPairs = [], validationPairs = [];
        SequenceClassificationConfig labels;
        if (task == "reward")
        {
            labels = stored ?? SequenceClassificationConfig.Reward(padId);
            if (labels.NumLabels != 1) throw new ArgumentException($"{modelDir}: a reward model has one output; this head has {labels.NumLabels}");
            var chat = tokenizer.ChatTemplate is null ? null : ChatTemplate.FromTokenizer(tokenizer);
            var rows = SequenceClassificationData.ReadPreference(options.Data);
            var (trainRows, validationRows) = Split(rows, options.Validation is { } v ? SequenceClassificationData.ReadPreference(v) : null, options);
            trainPairs = SequenceClassificationData.Tokenize(trainRows, tokenizer, chat, options.MaxSeqLength).Pairs;
            validationPairs = SequenceClassificationData.Tokenize(validationRows, tokenizer, chat, options.MaxSeqLength).Pairs;
            RequireMarginsEverywhereOrNowhere([.. trainPairs, .. validationPairs]);
        }
        else
        {
            var rows = SequenceClassificationData.ReadClassification(options.Data);
            var regression = task == "regression";
            labels = stored ?? (regression
                ? new SequenceClassificationConfig(["LABEL_0"], SequenceClassificationConfig.Regression, padId)
                : new SequenceClassificationConfig(SequenceClassificationData.LabelSet(rows.Select(r => r.Example)), SequenceClassificationConfig.SingleLabelClassification, padId));
            if (regression != (labels.EffectiveProblemType == SequenceClassificationConfig.Regression))
                throw new ArgumentException($"{modelDir}: the head's problem type is {labels.EffectiveProblemType}, not the {task} task");
            var (trainRows, validationRows) = Split(rows, options.Validation is { } v ? SequenceClassificationData.ReadClassification(v) : null, options);
            train = SequenceClassificationData.Tokenize(trainRows, tokenizer, labels.Labels, regression, options.MaxSeqLength);
            validation = SequenceClassificationData.Tokenize(validationRows, tokenizer, labels.Labels, regression, options.MaxSeqLength);
        }
        labels = labels with { PadTokenId = labels.PadTokenId ?? padId };
        var count = task == "reward" ? trainPairs.Count : train.Count;
        if (count == 0) throw new ArgumentException($"{options.Data}: no training rows left to train on");

        using var classifier = SequenceClassifier.Load(modelDir, labels, ModelFactory.ParseDtype(options.Dtype));
        var model = classifier.Model;
        LoraAdapter? adapter = null;
        if (method == "lora")
        {
            adapter = new LoraAdapter(new LoraConfig
            {
                R = options.LoraR, LoraAlpha = options.LoraAlpha, LoraDropout = options.LoraDropout,
                TargetModules = FineTuningMethods.ParseTargets(options.TargetModules),
                ModulesToSave = ["classifier", SequenceClassifier.ScoreModuleName],   // as PeftModelForSequenceClassification writes them
                PeftTaskType = LoraConfig.SequenceClassificationTaskType,
            });
            adapter.Inject(model);
        }
        var parameters = adapter is null
            ? model.parameters().ToList()
            : adapter.TrainableParameters.Select(p => (TorchSharp.Modules.Parameter)p.Parameter).ToList();
        if (adapter is null) foreach (var p in parameters) p.requires_grad = true;

        var steps = options.MaxSteps > 0 ? options.MaxSteps
            : Math.Max(1, (int)Math.Ceiling(options.Epochs * Math.Ceiling(count / (double)options.MicroBatchSize)));
        using var optimizer = torch.optim.AdamW(parameters, options.LearningRate, weight_decay: options.WeightDecay);
        var random = new Random((int)options.Seed);
        var order = new Queue<int>();
        var losses = new List<double>();
        model.train();
        for (var step = 0; step < steps; step++)
        {
            var batch = NextBatch(order, count, options.MicroBatchSize, random);
            foreach (var group in optimizer.ParamGroups)
                group.LearningRate = LearningRateSchedule.At("linear", options.LearningRate, step, steps, 0);
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = task == "reward"
                ? RewardBatchLoss(classifier, [.. batch.Select(i => trainPairs[i])], options.CenterRewardsCoefficient).Loss
                : ClassificationBatchLoss(classifier, [.. batch.Select(i => train[i])]).Loss;
            loss.backward();
            if (options.MaxGradNorm > 0) nn.utils.clip_grad_norm_(parameters, options.MaxGradNorm);
            optimizer.step();
            losses.Add(loss.item<float>());
            progress?.Report((step + 1, steps, losses[^1]));
        }
        model.eval();
        var metrics = task == "reward" ? EvaluateRewards(classifier, validationPairs, options.MicroBatchSize) : Evaluate(classifier, validation, options.MicroBatchSize);

        Directory.CreateDirectory(options.Output);
        if (adapter is not null)
        {
            PeftAdapters.Save(adapter, options.Output, options.Model);
            WriteLabels(classifier.Labels, Path.Combine(options.Output, LabelsFileName));
        }
        else classifier.Save(options.Output);
        PretrainedModel.CopyCompanionFiles(modelDir, options.Output);
        return new SequenceClassificationResult(losses, metrics, classifier.Labels, options.Output);
    }

    /// <summary>Mean loss and logits of a classification batch (cross-entropy or MSE by the head's problem type).</summary>
    public static (Tensor Loss, Tensor Logits) ClassificationBatchLoss(SequenceClassifier classifier, IReadOnlyList<ClassificationItem> batch)
    {
        var ids = RightPadded(batch.Select(b => b.Ids).ToList(), classifier);
        var logits = classifier.Logits(ids);
        var problem = classifier.Labels.EffectiveProblemType;
        var targets = problem == SequenceClassificationConfig.Regression
            ? tensor(batch.Select(b => b.Target).ToArray())
            : tensor(batch.Select(b => b.ClassId).ToArray());
        return (SequenceClassificationLoss.Compute(logits, targets.to(logits.device), problem), logits);
    }

    /// <summary>TRL's reward loss of a batch of pairs: chosen and rejected texts in one forward, then split.</summary>
    public static (Tensor Loss, Tensor Chosen, Tensor Rejected) RewardBatchLoss(SequenceClassifier classifier, IReadOnlyList<RewardPair> batch, double? centerRewardsCoefficient)
    {
        var ids = RightPadded([.. batch.Select(p => p.Chosen), .. batch.Select(p => p.Rejected)], classifier);
        var rewards = classifier.Logits(ids).squeeze(-1);                                    // (2B)
        var chosen = rewards.narrow(0, 0, batch.Count);
        var rejected = rewards.narrow(0, batch.Count, batch.Count);
        var margin = batch[0].Margin is null ? null : tensor(batch.Select(p => p.Margin ?? 0f).ToArray()).to(rewards.device);
        return (RewardModelLoss.Compute(chosen, rejected, margin, centerRewardsCoefficient), chosen, rejected);
    }

    /// <summary>Held-out classification metrics (ClassificationMetrics' accuracy and F1) or regression MSE, and the mean loss.</summary>
    public static IReadOnlyDictionary<string, double> Evaluate(SequenceClassifier classifier, IReadOnlyList<ClassificationItem> items, int batchSize)
    {
        if (items.Count == 0) return new Dictionary<string, double>();
        using var noGrad = no_grad();
        double lossSum = 0;
        var gold = new List<string>();
        var predicted = new List<string>();
        foreach (var batch in items.Chunk(batchSize))
        {
            using var scope = NewDisposeScope();
            var (loss, logits) = ClassificationBatchLoss(classifier, batch);
            lossSum += loss.item<float>() * batch.Length;
            if (classifier.Labels.EffectiveProblemType == SequenceClassificationConfig.Regression) continue;
            var argmax = logits.argmax(-1).data<long>().ToArray();
            gold.AddRange(batch.Select(b => classifier.Labels.Labels[(int)b.ClassId]));
            predicted.AddRange(argmax.Select(i => classifier.Labels.Labels[(int)i]));
        }
        var metrics = new Dictionary<string, double> { ["loss"] = lossSum / items.Count };
        if (classifier.Labels.EffectiveProblemType == SequenceClassificationConfig.Regression)
        {
            metrics["mse"] = metrics["loss"];
            return metrics;
        }
        var scores = ClassificationMetrics.Compute(gold, predicted, classifier.Labels.Labels);
        metrics["accuracy"] = scores.Accuracy;
        metrics["macro_f1"] = scores.Macro.F1;
        metrics["weighted_f1"] = scores.Weighted.F1;
        return metrics;
    }

    /// <summary>Held-out reward metrics as TRL logs them: loss, accuracy (chosen &gt; rejected) and mean margin.</summary>
    public static IReadOnlyDictionary<string, double> EvaluateRewards(SequenceClassifier classifier, IReadOnlyList<RewardPair> pairs, int batchSize)
    {
        if (pairs.Count == 0) return new Dictionary<string, double>();
        using var noGrad = no_grad();
        double lossSum = 0, correct = 0, marginSum = 0;
        foreach (var batch in pairs.Chunk(batchSize))
        {
            using var scope = NewDisposeScope();
            var (loss, chosen, rejected) = RewardBatchLoss(classifier, batch, null);
            lossSum += loss.item<float>() * batch.Length;
            correct += RewardModelLoss.Accuracy(chosen, rejected) * batch.Length;
            marginSum += (chosen - rejected).sum().item<float>();
        }
        return new Dictionary<string, double> { ["loss"] = lossSum / pairs.Count, ["accuracy"] = correct / pairs.Count, ["margin"] = marginSum / pairs.Count };
    }

    /// <summary>Writes <paramref name="labels"/> as the config.json fields transformers reads for a head.</summary>
    public static void WriteLabels(SequenceClassificationConfig labels, string path)
    {
        var json = new JsonObject();
        labels.WriteInto(json);
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>Reads the head config written beside a SEQ_CLS adapter by <see cref="WriteLabels"/>.</summary>
    public static SequenceClassificationConfig ReadLabels(string adapterDir)
    {
        var path = Path.Combine(adapterDir, LabelsFileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: a SEQ_CLS adapter needs the head's labels beside it", path);
        try
        {
            return SequenceClassificationConfig.FromJson(JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new InvalidDataException($"{path}: must hold a JSON object"), path);
        }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
    }

    /// <summary>(B, T) ids padded on the right with the head's pad id (its pooling then reads each row's last real token).</summary>
    internal static Tensor RightPadded(IReadOnlyList<int[]> rows, SequenceClassifier classifier)
    {
        var pad = classifier.Labels.PadTokenId ?? (rows.Count == 1 ? 0 : throw new InvalidOperationException("config.pad_token_id is not set, so rows cannot be batched"));
        var length = rows.Max(r => r.Length);
        var flat = new long[rows.Count * length];
        for (var i = 0; i < rows.Count; i++)
            for (var j = 0; j < length; j++)
                flat[i * length + j] = j < rows[i].Length ? rows[i][j] : pad;
        return tensor(flat, [rows.Count, length], ScalarType.Int64).to(classifier.Model.Device);
    }

    private static (IReadOnlyList<T> Train, IReadOnlyList<T> Validation) Split<T>(IReadOnlyList<T> rows, IReadOnlyList<T>? validation, SequenceClassificationOptions options)
    {
        if (validation is not null) return (rows, validation);
        var held = (int)Math.Floor(rows.Count * options.ValidationFraction);
        if (held == 0) return (rows, []);
        var shuffled = rows.ToArray();
        new Random((int)options.Seed).Shuffle(shuffled);
        return (shuffled[held..], shuffled[..held]);
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

    private static int[] NextBatch(Queue<int> order, int count, int size, Random random)
    {
        var batch = new List<int>(size);
        while (batch.Count < Math.Min(size, count))
        {
            if (order.Count == 0)
            {
                var epoch = Enumerable.Range(0, count).ToArray();
                random.Shuffle(epoch);
                foreach (var i in epoch) order.Enqueue(i);
            }
            batch.Add(order.Dequeue());
        }
        return [.. batch];
    }
}
