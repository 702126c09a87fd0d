using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Evaluation;
using SharpTune.Models;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Classification;

/// <summary>
/// What training and using a <see cref="SequenceClassifier"/> share: the labels file written beside a SEQ_CLS adapter,
/// right-padded batches and held-out classification metrics. Training itself is <see cref="Training.FineTuneJob"/> with
/// <see cref="Training.TrainingOptions.Task"/> sequence_classification, multi_label_classification, regression or reward;
/// held-out evaluation is <see cref="Evaluation.ClassifierEvaluation"/>.
/// </summary>
public static class SequenceClassification
{
    /// <summary>
    /// Beside a SEQ_CLS adapter: the head's config.json fields (num_labels, id2label, label2id, problem_type,
    /// pad_token_id), which PEFT leaves to the caller of AutoModelForSequenceClassification.from_pretrained.
    /// </summary>
    public const string LabelsFileName = "classification_config.json";

    /// <summary>Mean loss and logits of a classification batch (cross-entropy, BCE with logits or MSE by the head's problem type).</summary>
    public static (Tensor Loss, Tensor Logits) ClassificationBatchLoss(SequenceClassifier classifier, IReadOnlyList<ClassificationItem> batch)
    {
        var ids = RightPadded(batch.Select(b => b.Ids).ToList(), classifier);
        var logits = classifier.Logits(ids);
        var problem = classifier.Labels.EffectiveProblemType;
        var targets = problem switch
        {
            SequenceClassificationConfig.Regression => tensor(batch.Select(b => b.Target).ToArray()),
            SequenceClassificationConfig.MultiLabelClassification => tensor(batch.SelectMany(b => b.LabelVector
                ?? throw new ArgumentException($"{b.Location}: a multi-label head needs each row's label list")).ToArray(), [batch.Count, classifier.Labels.NumLabels]),
            _ => tensor(batch.Select(b => b.ClassId).ToArray()),
        };
        return (SequenceClassificationLoss.Compute(logits, targets.to(logits.device), problem), logits);
    }

    /// <summary>
    /// Held-out classification metrics (ClassificationMetrics' accuracy and F1; for a multi-label head
    /// <see cref="MultiLabelMetrics"/>' subset accuracy and F1) or regression MSE, and the mean loss.
    /// </summary>
    public static IReadOnlyDictionary<string, double> Evaluate(SequenceClassifier classifier, IReadOnlyList<ClassificationItem> items, int batchSize)
    {
        if (items.Count == 0) return new Dictionary<string, double>();
        using var noGrad = no_grad();
        double lossSum = 0;
        var gold = new List<string>();
        var predicted = new List<string>();
        var multiLabel = classifier.Labels.EffectiveProblemType == SequenceClassificationConfig.MultiLabelClassification;
        var goldSets = new List<bool[]>();
        var predictedSets = new List<bool[]>();
        foreach (var batch in items.Chunk(batchSize))
        {
            using var scope = NewDisposeScope();
            var (loss, logits) = ClassificationBatchLoss(classifier, batch);
            lossSum += loss.item<float>() * batch.Length;
            if (classifier.Labels.EffectiveProblemType == SequenceClassificationConfig.Regression) continue;
            if (multiLabel)
            {
                var decisions = logits.gt(0).cpu().data<bool>().ToArray();   // sigmoid > 0.5
                for (var row = 0; row < batch.Length; row++)
                {
                    goldSets.Add([.. batch[row].LabelVector!.Select(v => v > 0.5f)]);
                    predictedSets.Add(decisions[(row * classifier.Labels.NumLabels)..((row + 1) * classifier.Labels.NumLabels)]);
                }
                continue;
            }
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
        if (multiLabel)
        {
            var sets = MultiLabelMetrics.Compute(goldSets, predictedSets, classifier.Labels.Labels);
            metrics["accuracy"] = sets.SubsetAccuracy;
            metrics["macro_f1"] = sets.Macro.F1;
            metrics["micro_f1"] = sets.Micro.F1;
            metrics["weighted_f1"] = sets.Weighted.F1;
            metrics["hamming_loss"] = sets.HammingLoss;
            return metrics;
        }
        var scores = ClassificationMetrics.Compute(gold, predicted, classifier.Labels.Labels);
        metrics["accuracy"] = scores.Accuracy;
        metrics["macro_f1"] = scores.Macro.F1;
        metrics["weighted_f1"] = scores.Weighted.F1;
        return metrics;
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
    internal static Tensor RightPadded(IReadOnlyList<int[]> rows, SequenceClassifier classifier) =>
        RightPaddedTexts.PaddedIds(rows, classifier.Labels.PadTokenId, classifier.Model.Device);
}
