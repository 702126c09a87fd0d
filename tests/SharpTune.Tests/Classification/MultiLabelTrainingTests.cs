using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Data;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

/// <summary>
/// Multi-label heads (task multi_label_classification, problem_type multi_label_classification) on the common trainer:
/// rows with a list of labels, BCE with logits, exact accumulation, a saved head that scores with sigmoid.
/// </summary>
public class MultiLabelTrainingTests
{
    internal static string WriteMultiLabel(TempDir temp, int rows = 8, string name = "tags.jsonl")
    {
        // Lengths differ from row to row, so micro-batches pad differently from one whole batch; one row has no label.
        JsonNode Labels(params string[] labels) => new JsonArray([.. labels.Select(l => (JsonNode?)JsonValue.Create(l))]);
        var lines = Enumerable.Range(0, rows).Select(i => (i % 4) switch
        {
            0 => new JsonObject { ["text"] = $"Tom was happy with his dog{string.Concat(Enumerable.Repeat(" and glad", i % 3))} {i}.", ["label"] = Labels("animal", "happy") },
            1 => new JsonObject { ["text"] = $"The dog was sad {i}.", ["label"] = Labels("animal", "sad") },
            2 => new JsonObject { ["text"] = $"Lily smiled and sang {i}.", ["label"] = Labels("happy") },
            _ => new JsonObject { ["text"] = $"It rained {i}.", ["label"] = Labels() },
        });
        return temp.File(name, string.Join("\n", lines.Select(l => l.ToJsonString())) + "\n");
    }

    private static TrainingOptions Options(string data, string output) =>
        SequenceClassificationTrainingTests.Options(data, output, TrainingTasks.MultiLabelClassification) with
        {
            ValidationFraction = 0, LearningRate = 5e-3, LoraR = 4, LoraAlpha = 8, DisableDropout = true,
        };

    [SharedAssetFact("models/stories260K")]
    public void Rows_with_label_lists_become_multi_hot_targets_over_the_label_set()
    {
        using var temp = new TempDir();
        var rows = SequenceClassificationData.ReadClassification(WriteMultiLabel(temp, 4));
        var labels = SequenceClassificationData.LabelSet(rows.Select(r => r.Example));
        Assert.Equal(["animal", "happy", "sad"], labels);
        var items = SequenceClassificationData.Tokenize(rows, HfTokenizer.FromDirectory(TestAssets.Stories260K), labels,
            SequenceClassificationConfig.MultiLabelClassification, 64, out _);
        Assert.Equal([1f, 1, 0], items[0].LabelVector!);
        Assert.Equal([1f, 0, 1], items[1].LabelVector!);
        Assert.Equal([0f, 1, 0], items[2].LabelVector!);
        Assert.Equal([0f, 0, 0], items[3].LabelVector!);
    }

    [SharedAssetFact("models/stories260K")]
    public void Two_micro_batches_of_two_give_the_gradient_of_one_batch_of_four()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var labels = new SequenceClassificationConfig(["animal", "happy", "sad"], SequenceClassificationConfig.MultiLabelClassification, tokenizer.EosTokenId);
        using var classifier = SequenceClassifier.Load(TestAssets.Stories260K, labels);
        foreach (var p in classifier.Model.parameters()) p.requires_grad = true;
        var items = SequenceClassificationData.Tokenize(SequenceClassificationData.ReadClassification(WriteMultiLabel(temp, 4)),
            tokenizer, labels.Labels, labels.ProblemType!, 64, out _);
        var objective = new SharpTune.Training.Objectives.SequenceClassificationObjective(classifier);
        var whole = ClassifierTrainingJobTests.ScoreHeadGradient(classifier, objective, labels.PadTokenId, items);
        var split = ClassifierTrainingJobTests.ScoreHeadGradient(classifier, objective, labels.PadTokenId, items.Take(2).ToList(), items.Skip(2).ToList());
        var scale = whole.Max(Math.Abs);
        Assert.True(scale > 0);
        for (var i = 0; i < whole.Length; i++)
            Assert.True(Math.Abs(whole[i] - split[i]) <= 1e-5 * scale, $"[{i}]: {whole[i]} vs {split[i]}");
    }

    [SharedAssetFact("models/stories260K")]
    public void Two_micro_batches_of_two_train_as_one_batch_of_four_and_save_a_sigmoid_head()
    {
        using var temp = new TempDir();
        var data = WriteMultiLabel(temp);
        var accumulated = FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "accumulated")) with { MicroBatchSize = 2, GradientAccumulation = 2, MaxSteps = 2 });
        var whole = FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "whole")) with { MicroBatchSize = 4, GradientAccumulation = 1, MaxSteps = 2 });
        for (var step = 0; step < 2; step++)
            Assert.Equal(whole.Training.TrainLosses[step], accumulated.Training.TrainLosses[step], 5);
        var expected = AdapterAssertions.SavedTensors(whole.FinalDirectory);
        var actual = AdapterAssertions.SavedTensors(accumulated.FinalDirectory);
        Assert.Equal(3 * 64, expected["base_model.model.score.weight"].Length);
        // The score head to float rounding. The gradients are equal to rounding (the test above), but AdamW moves an entry
        // by lr · m / (√v + eps): where a LoRA factor's gradient is itself at rounding level (cancellation in the sum over
        // rows), rounding decides a visible part of that step. So the factors are held to 2% of two steps' reach (2 · lr).
        var head = "base_model.model.score.weight";
        for (var i = 0; i < expected[head].Length; i++)
            Assert.True(Math.Abs(expected[head][i] - actual[head][i]) <= 1e-5 * expected[head].Max(Math.Abs), $"{head}[{i}]: {expected[head][i]} vs {actual[head][i]}");
        foreach (var (name, values) in expected)
            for (var i = 0; i < values.Length; i++)
                Assert.True(Math.Abs(values[i] - actual[name][i]) <= 0.02 * 2 * 5e-3, $"{name}[{i}]: {values[i]} vs {actual[name][i]}");

        // The head's config says multi_label; classify score reads it with sigmoid (probabilities need not sum to 1).
        var headConfig = SequenceClassification.ReadLabels(whole.FinalDirectory);
        Assert.Equal(SequenceClassificationConfig.MultiLabelClassification, headConfig.ProblemType);
        Assert.Equal(["animal", "happy", "sad"], headConfig.Labels);
        using var classifier = TextClassifier.Load(TestAssets.Stories260K, whole.FinalDirectory);
        var score = classifier.Score(["The dog was sad."])[0];
        for (var i = 0; i < 3; i++) Assert.Equal(1 / (1 + Math.Exp(-score.Logits[i])), score.Probabilities![i], 5);
        Assert.NotNull(score.PredictedLabels);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_killed_multi_label_run_resumes_to_the_same_losses_and_head()
    {
        using var temp = new TempDir();
        var options = Options(WriteMultiLabel(temp, 12), Path.Combine(temp.Path, "uninterrupted")) with
            { MicroBatchSize = 2, GradientAccumulation = 2, MaxSteps = 4, SaveEvery = 2, KeepCheckpoints = 5 };
        var uninterrupted = FineTuneJob.Run(options);
        var killed = options with { Output = Path.Combine(temp.Path, "resumed") };
        KilledRun.StopAfterStep(killed, 3);
        var resumed = FineTuneJob.Run(killed, resume: true);
        Assert.Equal(4, KilledRun.Losses(resumed.Training.RunDirectory).Count);
        Assert.Equal(KilledRun.Losses(uninterrupted.Training.RunDirectory), KilledRun.Losses(resumed.Training.RunDirectory));
        Assert.Equal(AdapterAssertions.SavedTensors(uninterrupted.FinalDirectory)["base_model.model.score.weight"], AdapterAssertions.SavedTensors(resumed.FinalDirectory)["base_model.model.score.weight"]);
        Assert.Equal(SequenceClassificationConfig.MultiLabelClassification, SequenceClassification.ReadLabels(resumed.FinalDirectory).ProblemType);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_full_run_lowers_the_loss_and_saves_a_multi_label_classifier_folder()
    {
        using var temp = new TempDir();
        var result = FineTuneJob.Run(Options(WriteMultiLabel(temp, 16), Path.Combine(temp.Path, "full")) with
        {
            Method = "full", MicroBatchSize = 12, MaxSteps = 5, LearningRate = 1e-3, ValidationFraction = 0.25,
            Test = WriteMultiLabel(temp, 4, "test.jsonl"),
        });
        var losses = result.Training.TrainLosses;
        Assert.True(losses[^1] < losses[0] - 0.02, $"loss went {string.Join(" → ", losses)}");
        // Validation and test F1 from MultiLabelMetrics beside the trainer's subset accuracy.
        var last = SharpTune.Tracking.MetricsLog.ReadAll(Path.Combine(result.Training.RunDirectory, "metrics.jsonl"))[^1];
        foreach (var key in new[] { "accuracy", "val_accuracy", "val_macro_f1", "val_micro_f1", "val_hamming_loss" })
            Assert.True(last.ContainsKey(key), key);
        Assert.InRange(last["val_hamming_loss"]!.GetValue<double>(), 0, 1);
        Assert.True(result.TestMetrics!.ContainsKey("micro_f1"));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(result.FinalDirectory, "config.json")))!;
        Assert.Equal("multi_label_classification", config["problem_type"]!.GetValue<string>());
        Assert.Equal(3, config["num_labels"]!.GetValue<int>());
    }

    [SharedAssetFact("models/stories260K")]
    public void Label_lists_are_refused_by_a_single_label_task_and_unknown_or_mistyped_labels_name_file_line_and_field()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var data = WriteMultiLabel(temp, 4);
        var single = Assert.Throws<DataFormatException>(() => FineTuneJob.Run(
            SequenceClassificationTrainingTests.Options(data, Path.Combine(temp.Path, "single"), TrainingTasks.SequenceClassification) with { MaxSteps = 1, ValidationFraction = 0 }));
        Assert.Contains($"{data}:1", single.Message);
        Assert.Contains("multi_label_classification", single.Message);

        var unknown = temp.File("unknown.jsonl", "{\"text\":\"a\",\"label\":[\"happy\"]}\n{\"text\":\"b\",\"label\":[\"happy\",\"angry\"]}\n");
        var error = Assert.Throws<DataFormatException>(() => SequenceClassificationData.Tokenize(SequenceClassificationData.ReadClassification(unknown),
            tokenizer, ["happy", "sad"], SequenceClassificationConfig.MultiLabelClassification, 64, out _));
        Assert.Contains($"{unknown}:2", error.Message);
        Assert.Contains("angry", error.Message);

        var nested = temp.File("nested.jsonl", "{\"text\":\"a\",\"label\":[\"happy\",{\"x\":1}]}\n");
        var mistyped = Assert.Throws<DataFormatException>(() => SequenceClassificationData.ReadClassification(nested));
        Assert.Contains($"{nested}:1", mistyped.Message);
        Assert.Contains("label[1]", mistyped.Message);
    }
}
