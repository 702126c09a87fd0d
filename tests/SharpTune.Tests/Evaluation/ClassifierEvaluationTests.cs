using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Data;
using SharpTune.Evaluation;
using SharpTune.Models;
using SharpTune.Tests.Classification;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using SharpTune.Tests.Training;
using SharpTune.Tokenization;
using SharpTune.Training;
using static TorchSharp.torch;

namespace SharpTune.Tests.Evaluation;

/// <summary>
/// <see cref="ClassifierEvaluation"/> (and <c>sharptune eval</c> on a score head): every prediction and metric is checked
/// against <see cref="TextClassifier"/> scores computed separately, one text at a time, and the metrics worked from them here.
/// </summary>
public class ClassifierEvaluationTests
{
    private static string Lines(TempDir temp, string name, IEnumerable<JsonObject> rows) =>
        temp.File(name, string.Join("\n", rows.Select(r => r.ToJsonString())) + "\n");

    private static string Classes(TempDir temp, string name, int rows, int offset = 0) =>
        Lines(temp, name, Enumerable.Range(offset, rows).Select(i => i % 2 == 0
            ? new JsonObject { ["text"] = $"Tom was happy and he smiled {i}.", ["label"] = "happy" }
            : new JsonObject { ["text"] = $"The dog was sad and it cried {i}.", ["label"] = "sad" }));

    /// <summary>A classifier folder with a seeded random head for <paramref name="labels"/> (stories260K's decoder).</summary>
    private static string HeadFolder(TempDir temp, string name, SequenceClassificationConfig labels)
    {
        var dir = Path.Combine(temp.Path, name);
        manual_seed(11);
        using var classifier = SequenceClassifier.Load(TestAssets.Stories260K, labels);
        classifier.Save(dir);
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, dir);
        return dir;
    }

    private static int? Pad => HfTokenizer.FromDirectory(TestAssets.Stories260K).EosTokenId;

    [SharedAssetFact("models/stories260K")]
    public void A_trained_lora_classifier_is_evaluated_with_the_labels_and_probabilities_textclassifier_gives()
    {
        using var temp = new TempDir();
        var run = FineTuneJob.Run(SequenceClassificationTrainingTests.Options(Classes(temp, "train.jsonl", 12), Path.Combine(temp.Path, "run"),
            TrainingTasks.SequenceClassification) with
            {
                ValidationFraction = 0, LearningRate = 5e-3, MicroBatchSize = 12, MaxSteps = 3, LoraR = 4, LoraAlpha = 8, MaxSeqLength = 100,
            });
        var held = Classes(temp, "held.jsonl", 7, offset: 100);
        var progress = new List<EvaluationProgress>();
        var result = ClassifierEvaluation.Run(TestAssets.Stories260K, run.FinalDirectory, held, new ClassifierEvaluationOptions { BatchSize = 3 },
            progress: new SynchronousProgress<EvaluationProgress>(progress.Add));

        Assert.Equal(TrainingTasks.SequenceClassification, result.Format);
        Assert.Equal(7, result.Examples);
        // Texts are cut where training cut them: the run's max_seq_length (its config.yaml), not the context length of 512.
        Assert.Equal(100, ClassifierEvaluation.TrainedMaxLength(run.FinalDirectory));
        Assert.Contains("texts cut to 100 tokens (0 cut)", result.Signatures["task"]);
        // Independently: the classifier loaded again, each text scored alone.
        using var classifier = TextClassifier.Load(TestAssets.Stories260K, run.FinalDirectory);
        var rows = SequenceClassificationData.ReadClassification(held);
        var expected = rows.Select(r => classifier.Score([r.Example.Text], batchSize: 1)[0]).ToList();
        var gold = rows.Select(r => r.Example.ClassLabel).ToList();
        for (var i = 0; i < 7; i++)
        {
            Assert.Equal(expected[i].Label, result.Records[i].Output);
            Assert.Equal(gold[i], result.Records[i].Reference);
            Assert.Equal(expected[i].Probabilities![0], result.Records[i].Scores["p_happy"], 4);
            Assert.Equal(expected[i].Probabilities![1], result.Records[i].Scores["p_sad"], 4);
        }
        // Accuracy and macro F1 worked here from those predictions (sklearn's per-class F1, unweighted mean).
        var predicted = expected.Select(e => e.Label!).ToList();
        Assert.Equal(predicted.Zip(gold).Count(p => p.First == p.Second) / 7.0, result.Metrics["accuracy"], 12);
        double F1(string label)
        {
            var tp = predicted.Zip(gold).Count(p => p.First == label && p.Second == label);
            var predictedCount = predicted.Count(p => p == label);
            var support = gold.Count(g => g == label);
            var precision = predictedCount == 0 ? 0 : (double)tp / predictedCount;
            var recall = support == 0 ? 0 : (double)tp / support;
            return precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
        }
        Assert.Equal((F1("happy") + F1("sad")) / 2, result.Metrics["macro_f1"], 12);
        Assert.Equal(result.Metrics["accuracy"], result.Metrics["micro_f1"], 12);   // single-label with every class in the labels
        var matrix = result.Classification!.ConfusionMatrix;
        Assert.Equal(gold.Count(g => g == "happy") , matrix[0].Sum());
        Assert.Equal(predicted.Zip(gold).Count(p => p.Second == "sad" && p.First == "happy"), matrix[1][0]);
        Assert.Equal("head", result.Classification.LabelMode);

        // Progress after each batch of 3 (3, 6, 7 of 7), and the report files with the confusion matrix plot.
        Assert.Equal([0, 3, 6, 7], progress.Select(p => p.Done));
        Assert.All(progress, p => Assert.Equal(7, p.Total));
        var files = EvaluationReportWriter.Write(result, Path.Combine(temp.Path, "report"));
        Assert.True(File.Exists(files.ConfusionMatrixPlot));
        var json = JsonNode.Parse(File.ReadAllText(files.Json))!;
        Assert.Equal(result.Metrics["macro_f1"], json["metrics"]!["macro_f1"]!.GetValue<double>(), 12);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_regression_folder_reports_errors_and_correlations_of_the_scores_textclassifier_gives()
    {
        using var temp = new TempDir();
        var model = HeadFolder(temp, "regressor", new SequenceClassificationConfig(["LABEL_0"], SequenceClassificationConfig.Regression, Pad));
        var data = Lines(temp, "scores.jsonl", Enumerable.Range(0, 6).Select(i => new JsonObject { ["text"] = $"Tom had {i} red balls.", ["label"] = i * 0.25 }));
        var result = ClassifierEvaluation.Run(model, null, data, new ClassifierEvaluationOptions { BatchSize = 4 });
        Assert.Equal(TrainingTasks.Regression, result.Format);   // detected from problem_type
        using var classifier = TextClassifier.Load(model);
        var predictions = Enumerable.Range(0, 6).Select(i => (double)classifier.Score([$"Tom had {i} red balls."], batchSize: 1)[0].Score).ToArray();
        var gold = Enumerable.Range(0, 6).Select(i => i * 0.25).ToArray();
        var mse = predictions.Zip(gold).Average(p => (p.First - p.Second) * (p.First - p.Second));
        Assert.Equal(mse, result.Metrics["mse"], 5);
        Assert.Equal(Math.Sqrt(mse), result.Metrics["rmse"], 5);
        Assert.Equal(predictions.Zip(gold).Average(p => Math.Abs(p.First - p.Second)), result.Metrics["mae"], 5);
        var goldMean = gold.Average();
        Assert.Equal(1 - predictions.Zip(gold).Sum(p => (p.First - p.Second) * (p.First - p.Second)) / gold.Sum(g => (g - goldMean) * (g - goldMean)),
            result.Metrics["r2"], 4);
        // Pearson worked here from the scores; Spearman as Pearson of the ranks (the gold values are distinct, as are the predictions).
        Assert.Equal(Pearson(predictions, gold), result.Metrics["pearson"], 4);
        Assert.Equal(Pearson(Ranks(predictions), Ranks(gold)), result.Metrics["spearman"], 6);
        for (var i = 0; i < 6; i++) Assert.Equal(predictions[i], result.Records[i].Scores["prediction"], 4);
    }

    private static double Pearson(double[] x, double[] y)
    {
        var (mx, my) = (x.Average(), y.Average());
        var cov = x.Zip(y).Sum(p => (p.First - mx) * (p.Second - my));
        return cov / Math.Sqrt(x.Sum(v => (v - mx) * (v - mx)) * y.Sum(v => (v - my) * (v - my)));
    }

    /// <summary>1-based ranks of distinct values.</summary>
    private static double[] Ranks(double[] values) => [.. values.Select(v => (double)values.Count(w => w < v) + 1)];

    [SharedAssetFact("models/stories260K")]
    public void A_reward_model_is_scored_on_pairs_as_textclassifier_scores_each_side()
    {
        using var temp = new TempDir();
        var model = HeadFolder(temp, "reward", SequenceClassificationConfig.Reward(Pad));
        var pairs = Enumerable.Range(0, 5).Select(i => (Prompt: "Once upon a time", Chosen: $" there was a happy girl {i}.", Rejected: $" dog dog {i}")).ToList();
        var data = Lines(temp, "pairs.jsonl", pairs.Select(p => new JsonObject { ["prompt"] = p.Prompt, ["chosen"] = p.Chosen, ["rejected"] = p.Rejected }));
        var result = ClassifierEvaluation.Run(model, null, data, new ClassifierEvaluationOptions { BatchSize = 3 });
        Assert.Equal(TrainingTasks.Reward, result.Format);   // one output, no problem_type
        using var classifier = TextClassifier.Load(model);
        // TextClassifier appends EOS for a reward head, as reward training read prompt + answer + EOS.
        var chosen = pairs.Select(p => (double)classifier.Score([p.Prompt + p.Chosen], batchSize: 1)[0].Score).ToArray();
        var rejected = pairs.Select(p => (double)classifier.Score([p.Prompt + p.Rejected], batchSize: 1)[0].Score).ToArray();
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(chosen[i], result.Records[i].Scores["chosen_reward"], 4);
            Assert.Equal(rejected[i], result.Records[i].Scores["rejected_reward"], 4);
        }
        var decided = Enumerable.Range(0, 5).Where(i => chosen[i] != rejected[i]).ToList();
        Assert.Equal(decided.Count(i => chosen[i] > rejected[i]) / (double)decided.Count, result.Metrics["accuracy"], 12);
        Assert.Equal(chosen.Zip(rejected).Average(p => p.First - p.Second), result.Metrics["margin"], 4);
    }

    [SharedAssetFact("models/stories260K")]
    public void Conversational_pairs_are_rendered_with_the_chat_template_and_refused_without_one()
    {
        using var temp = new TempDir();
        var model = HeadFolder(temp, "reward", SequenceClassificationConfig.Reward(Pad));
        var row = new JsonObject
        {
            ["prompt"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hi" }),
            ["chosen"] = new JsonArray(new JsonObject { ["role"] = "assistant", ["content"] = "Hello there." }),
            ["rejected"] = new JsonArray(new JsonObject { ["role"] = "assistant", ["content"] = "Go." }),
        };
        var data = Lines(temp, "chat.jsonl", [row]);
        // stories260K's tokenizer has no chat template: the row is refused by file, line and field, not scored as plain text.
        var error = Assert.Throws<DataFormatException>(() => ClassifierEvaluation.Run(model, null, data, new ClassifierEvaluationOptions()));
        Assert.Contains($"{data}:1", error.Message);
        Assert.Contains("chat template", error.Message);

        var result = ClassifierEvaluation.Run(model, null, data, new ClassifierEvaluationOptions(), chatTemplate: "chatml");
        // Independently: the chatml rendering of prompt + answer, encoded without special tokens (as TRL's RewardTrainer).
        var chatml = ChatTemplate.BuiltIn("chatml");
        using var classifier = TextClassifier.Load(model);
        double Reward(string answer)
        {
            var text = chatml.Render([new ChatMessage("user", "Hi"), new ChatMessage("assistant", answer)], addGenerationPrompt: false);
            return classifier.ScoreIds([text], [[.. classifier.Tokenizer.Encode(text, addSpecialTokens: false)]], 1)[0].Score;
        }
        Assert.Equal(Reward("Hello there."), result.Records[0].Scores["chosen_reward"], 4);
        Assert.Equal(Reward("Go."), result.Records[0].Scores["rejected_reward"], 4);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_language_model_folder_is_not_taken_for_a_classifier()
    {
        using var temp = new TempDir();
        var error = Assert.Throws<ArgumentException>(() =>
            ClassifierEvaluation.Run(TestAssets.Stories260K, null, Classes(temp, "held.jsonl", 2), new ClassifierEvaluationOptions()));
        Assert.Contains("not a classifier", error.Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_multi_label_head_is_scored_with_its_sigmoid_label_sets()
    {
        using var temp = new TempDir();
        var model = HeadFolder(temp, "tags", new SequenceClassificationConfig(["animal", "happy", "sad"], SequenceClassificationConfig.MultiLabelClassification, Pad));
        var data = MultiLabelTrainingTests.WriteMultiLabel(temp, 6);
        var result = ClassifierEvaluation.Run(model, null, data, new ClassifierEvaluationOptions());
        Assert.Equal(TrainingTasks.MultiLabelClassification, result.Format);
        using var classifier = TextClassifier.Load(model);
        var rows = SequenceClassificationData.ReadClassification(data);
        var predicted = rows.Select(r => classifier.Score([r.Example.Text], batchSize: 1)[0].PredictedLabels!.ToHashSet()).ToList();
        var gold = rows.Select(r => r.Example.ClassLabels!.ToHashSet()).ToList();
        Assert.Equal(predicted.Zip(gold).Count(p => p.First.SetEquals(p.Second)) / 6.0, result.Metrics["subset_accuracy"], 12);
        var wrong = predicted.Zip(gold).Sum(p => new[] { "animal", "happy", "sad" }.Count(l => p.First.Contains(l) != p.Second.Contains(l)));
        Assert.Equal(wrong / 18.0, result.Metrics["hamming_loss"], 12);
        Assert.Equal(3 + 3, result.PerLabel!.Count);   // three labels, then micro, macro and weighted
        var files = EvaluationReportWriter.Write(result, Path.Combine(temp.Path, "report"));
        Assert.Contains("| animal |", File.ReadAllText(files.Markdown));
    }

    [SharedAssetFact("models/stories260K")]
    public void An_overridden_task_reads_the_logits_with_its_own_function_as_transformers_function_to_apply()
    {
        using var temp = new TempDir();
        static double Sigmoid(float x) => 1 / (1 + Math.Exp(-x));
        // A single-label head evaluated as multi-label: sigmoid per label, the labels whose sigmoid is over 0.5.
        string[] tags = ["animal", "happy", "sad"];
        var single = HeadFolder(temp, "single", new SequenceClassificationConfig(tags, SequenceClassificationConfig.SingleLabelClassification, Pad));
        var data = MultiLabelTrainingTests.WriteMultiLabel(temp, 6);
        var multi = ClassifierEvaluation.Run(single, null, data, new ClassifierEvaluationOptions { Task = TrainingTasks.MultiLabelClassification });
        Assert.Equal(TrainingTasks.MultiLabelClassification, multi.Format);
        var rows = SequenceClassificationData.ReadClassification(data);
        using (var classifier = TextClassifier.Load(single))
        {
            for (var i = 0; i < 6; i++)
            {
                var logits = classifier.Score([rows[i].Example.Text], batchSize: 1)[0].Logits;
                Assert.Equal(string.Join(", ", tags.Where((_, k) => Sigmoid(logits[k]) > 0.5)), multi.Records[i].Output);
                for (var k = 0; k < 3; k++) Assert.Equal(Sigmoid(logits[k]), multi.Records[i].Scores["p_" + tags[k]], 4);
            }
        }

        // A multi-label head evaluated as single-label: softmax over the labels and the argmax, not sigmoid values.
        var tagger = HeadFolder(temp, "multi", new SequenceClassificationConfig(["happy", "sad"], SequenceClassificationConfig.MultiLabelClassification, Pad));
        var held = Classes(temp, "held.jsonl", 4);
        var argmax = ClassifierEvaluation.Run(tagger, null, held, new ClassifierEvaluationOptions { Task = TrainingTasks.SequenceClassification });
        using var reread = TextClassifier.Load(tagger);
        var texts = SequenceClassificationData.ReadClassification(held).Select(r => r.Example.Text).ToList();
        for (var i = 0; i < 4; i++)
        {
            var logits = reread.Score([texts[i]], batchSize: 1)[0].Logits;
            var sum = Math.Exp(logits[0]) + Math.Exp(logits[1]);
            Assert.Equal(Math.Exp(logits[0]) / sum, argmax.Records[i].Scores["p_happy"], 4);
            Assert.Equal(Math.Exp(logits[1]) / sum, argmax.Records[i].Scores["p_sad"], 4);
            Assert.Equal(logits[0] >= logits[1] ? "happy" : "sad", argmax.Records[i].Output);
        }
    }

    [Fact]
    public void The_trained_max_length_is_read_from_the_folders_own_config_or_its_runs()
    {
        using var temp = new TempDir();
        var run = Path.Combine(temp.Path, "run");
        foreach (var folder in new[] { "final", "checkpoint-4", "checkpoint-8", "other", "own" }) Directory.CreateDirectory(Path.Combine(run, folder));
        TrainingConfigFile.Save(new TrainingOptions { MaxSeqLength = 96 }, Path.Combine(run, "config.yaml"));
        TrainingConfigFile.Save(new TrainingOptions { MaxSeqLength = 40 }, Path.Combine(run, "own", "config.yaml"));
        TrainingConfigFile.Save(new TrainingOptions { MaxSeqLength = 24 }, Path.Combine(run, "checkpoint-8", "config.yaml"));
        Assert.Equal(96, ClassifierEvaluation.TrainedMaxLength(Path.Combine(run, "final")));
        Assert.Equal(96, ClassifierEvaluation.TrainedMaxLength(Path.Combine(run, "checkpoint-4") + Path.DirectorySeparatorChar));
        Assert.Equal(40, ClassifierEvaluation.TrainedMaxLength(Path.Combine(run, "own")));
        Assert.Equal(24, ClassifierEvaluation.TrainedMaxLength(Path.Combine(run, "checkpoint-8")));   // a folder's own config comes first
        Assert.Null(ClassifierEvaluation.TrainedMaxLength(Path.Combine(run, "other")));   // not a run's output folder: nothing read from beside it
    }

    [SharedAssetFact("models/stories260K")]
    public void Max_length_cuts_the_texts_and_is_only_taken_for_a_classifier()
    {
        using var temp = new TempDir();
        var model = HeadFolder(temp, "classifier", new SequenceClassificationConfig(["happy", "sad"], SequenceClassificationConfig.SingleLabelClassification, Pad));
        var held = Classes(temp, "held.jsonl", 3);
        var result = ClassifierEvaluation.Run(model, null, held, new ClassifierEvaluationOptions { MaxLength = 5 });
        Assert.Contains("texts cut to 5 tokens (3 cut)", result.Signatures["task"]);
        // Independently: the first five ids of each text (BOS included), scored alone.
        using var classifier = TextClassifier.Load(model);
        var texts = SequenceClassificationData.ReadClassification(held).Select(r => r.Example.Text).ToList();
        for (var i = 0; i < 3; i++)
        {
            var cut = classifier.Tokenizer.Encode(texts[i], addSpecialTokens: true).Take(5).ToArray();
            Assert.Equal(classifier.ScoreIds([texts[i]], [cut], 1)[0].Probabilities![0], result.Records[i].Scores["p_happy"], 4);
        }

        var report = Path.Combine(temp.Path, "report");
        var (exit, _, stderr) = SharpTuneCli.Run("eval", "--model", model, "--data", held, "--max-length", "5", "--output", report);
        Assert.True(exit == 0, stderr);
        Assert.Contains("texts cut to 5 tokens (3 cut)", File.ReadAllText(Path.Combine(report, "eval.md")));
        var (refused, _, error) = SharpTuneCli.Run("eval", "--model", TestAssets.Stories260K, "--data", held, "--max-length", "5");
        Assert.Equal(1, refused);
        Assert.Contains("--max-length", error);
    }

    [SharedAssetFact("models/stories260K")]
    public void The_task_can_be_overridden_and_impossible_or_bad_input_is_refused_by_file_line_and_field()
    {
        using var temp = new TempDir();
        var regression = HeadFolder(temp, "regressor", new SequenceClassificationConfig(["LABEL_0"], SequenceClassificationConfig.Regression, Pad));
        var pairs = Lines(temp, "pairs.jsonl", [new JsonObject { ["prompt"] = "a", ["chosen"] = " b", ["rejected"] = " c" }]);
        // A regression head read as a reward model (one output each).
        Assert.Equal(TrainingTasks.Reward, ClassifierEvaluation.Run(regression, null, pairs, new ClassifierEvaluationOptions { Task = "reward" }).Format);
        var single = Assert.Throws<ArgumentException>(() => ClassifierEvaluation.Run(regression, null, pairs, new ClassifierEvaluationOptions { Task = "sequence_classification" }));
        Assert.Contains("at least two labels", single.Message);
        Assert.Contains("task must be one of", Assert.Throws<ArgumentException>(() =>
            ClassifierEvaluation.Run(regression, null, pairs, new ClassifierEvaluationOptions { Task = "ranking" })).Message);

        var words = Lines(temp, "words.jsonl", [new JsonObject { ["text"] = "a", ["label"] = 1 }, new JsonObject { ["text"] = "b", ["label"] = "high" }]);
        var notNumber = Assert.Throws<DataFormatException>(() => ClassifierEvaluation.Run(regression, null, words, new ClassifierEvaluationOptions()));
        Assert.Contains($"{words}:2", notNumber.Message);
        Assert.Contains("label", notNumber.Message);

        var classifier = HeadFolder(temp, "classifier", new SequenceClassificationConfig(["happy", "sad"], SequenceClassificationConfig.SingleLabelClassification, Pad));
        var unknown = Lines(temp, "unknown.jsonl", [new JsonObject { ["text"] = "a", ["label"] = "happy" }, new JsonObject { ["text"] = "b", ["label"] = "angry" }]);
        var error = Assert.Throws<DataFormatException>(() => ClassifierEvaluation.Run(classifier, null, unknown, new ClassifierEvaluationOptions()));
        Assert.Contains($"{unknown}:2", error.Message);
        Assert.Contains("angry", error.Message);

        var reward = HeadFolder(temp, "reward", SequenceClassificationConfig.Reward(Pad));
        var missing = Lines(temp, "missing.jsonl", [new JsonObject { ["prompt"] = "a", ["chosen"] = " b", ["rejected"] = " c" }, new JsonObject { ["prompt"] = "a", ["chosen"] = " b" }]);
        var noRejected = Assert.ThrowsAny<Exception>(() => { ClassifierEvaluation.Run(reward, null, missing, new ClassifierEvaluationOptions()); });
        Assert.Contains($"{missing}:2", noRejected.Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_cancelled_evaluation_stops_between_batches()
    {
        using var temp = new TempDir();
        var model = HeadFolder(temp, "classifier", new SequenceClassificationConfig(["happy", "sad"], SequenceClassificationConfig.SingleLabelClassification, Pad));
        using var classifier = TextClassifier.Load(model);
        var rows = new SharpTune.Data.Readers.DatasetReader().Read(Classes(temp, "held.jsonl", 8)).ToList();
        using var cancel = new CancellationTokenSource();
        var progress = new SynchronousProgress<EvaluationProgress>(p => { if (p.Done == 2) cancel.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            ClassifierEvaluation.Evaluate(classifier, rows, new ClassifierEvaluationOptions { BatchSize = 2 }, progress: progress, cancellationToken: cancel.Token);
        });
    }

    [SharedAssetFact("models/stories260K")]
    public void Sharptune_eval_detects_a_classifier_folder_and_writes_its_report()
    {
        using var temp = new TempDir();
        var model = HeadFolder(temp, "classifier", new SequenceClassificationConfig(["happy", "sad"], SequenceClassificationConfig.SingleLabelClassification, Pad));
        var report = Path.Combine(temp.Path, "report");
        var (exit, stdout, stderr) = SharpTuneCli.Run("eval", "--model", model, "--data", Classes(temp, "held.jsonl", 4), "--output", report);
        Assert.True(exit == 0, stderr);
        Assert.Contains("sequence_classification", stdout);
        Assert.Contains("macro_f1", stdout);
        Assert.Contains("scoring 4/4", stderr);
        Assert.True(File.Exists(Path.Combine(report, "eval_confusion.png")));
        // Options of the language-model evaluation are refused by name rather than ignored.
        var (refused, _, error) = SharpTuneCli.Run("eval", "--model", model, "--data", Classes(temp, "held2.jsonl", 4), "--label-mode", "generate");
        Assert.Equal(1, refused);
        Assert.Contains("--label-mode", error);
        var (badTask, _, taskError) = SharpTuneCli.Run("eval", "--model", model, "--data", Classes(temp, "held3.jsonl", 4), "--head-task", "regression");
        Assert.Equal(1, badTask);
        Assert.Contains("one output", taskError);
    }
}
