using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Classification;
using SharpTune.Data;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Tracking;
using SharpTune.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

public class SequenceClassificationTrainingTests
{
    private static string WriteClassification(TempDir temp)
    {
        var lines = Enumerable.Range(0, 16).Select(i => i % 2 == 0
            ? new JsonObject { ["text"] = $"Tom was happy and he smiled {i}.", ["label"] = "happy" }
            : new JsonObject { ["text"] = $"The dog was sad and it cried {i}.", ["label"] = "sad" });
        return temp.File("classes.jsonl", string.Join("\n", lines.Select(l => l.ToJsonString())) + "\n");
    }

    private static string WritePreferences(TempDir temp, bool margins = false)
    {
        var lines = Enumerable.Range(0, 12).Select(i =>
        {
            var row = new JsonObject { ["prompt"] = "Once upon a time", ["chosen"] = $" there was a happy girl {i}.", ["rejected"] = $" dog dog dog dog {i}" };
            if (margins) row["margin"] = 0.5 * (i % 3);
            return row;
        });
        return temp.File("pairs.jsonl", string.Join("\n", lines.Select(l => l.ToJsonString())) + "\n");
    }

    /// <summary>A short run on the common trainer: constant learning rate, no warmup, nothing saved but final/.</summary>
    internal static TrainingOptions Options(string data, string output, string task) => new()
    {
        Model = TestAssets.Stories260K, Data = data, Output = output, Task = task,
        LrSchedule = "constant", WarmupRatio = 0, LoraDropout = 0, SaveEvery = 0, EvalEvery = 100, Seed = 7,
    };

    private static JsonObject LastMetrics(string runDir) => MetricsLog.ReadAll(Path.Combine(runDir, "metrics.jsonl"))[^1];

    [SharedAssetFact("models/stories260K")]
    public void A_few_lora_steps_lower_the_loss_and_change_only_the_adapter_and_score()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var labels = new SequenceClassificationConfig(["happy", "sad"], null, tokenizer.EosTokenId);
        using var classifier = SequenceClassifier.Load(TestAssets.Stories260K, labels);
        var items = SequenceClassificationData.Tokenize(SequenceClassificationData.ReadClassification(WriteClassification(temp)), tokenizer, labels.Labels, false, 64);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, ModulesToSave = ["classifier", "score"], PeftTaskType = "SEQ_CLS" });
        adapter.Inject(classifier.Model);
        var before = classifier.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        var parameters = adapter.TrainableParameters.Select(p => p.Parameter).ToList();
        using var optimizer = torch.optim.AdamW(parameters, 5e-3);
        classifier.Model.train();
        var losses = new List<float>();
        for (var step = 0; step < 6; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var (loss, _) = SequenceClassification.ClassificationBatchLoss(classifier, items);
            loss.backward();
            optimizer.step();
            losses.Add(loss.item<float>());
        }
        Assert.True(losses[^1] < losses[0] - 0.05, $"loss went {string.Join(" → ", losses)}");
        var changed = classifier.Model.state_dict().Where(kv => !kv.Value.allclose(before[kv.Key], 0, 0)).Select(kv => kv.Key).ToList();
        Assert.Contains("score.weight", changed);
        Assert.Contains(changed, n => n.Contains("lora_"));
        Assert.All(changed, n => Assert.True(n == "score.weight" || n.Contains(".lora_A.") || n.Contains(".lora_B."), $"{n} changed"));
    }

    [SharedAssetFact("models/stories260K")]
    public void A_lora_run_saves_a_peft_seq_cls_adapter_that_merges_into_a_classifier_folder_with_the_same_outputs()
    {
        using var temp = new TempDir();
        var run = FineTuneJob.Run(Options(WriteClassification(temp), Path.Combine(temp.Path, "run"), TrainingTasks.SequenceClassification) with
        {
            ValidationFraction = 0.25, LearningRate = 5e-3, MicroBatchSize = 12, MaxSteps = 6, LoraR = 4, LoraAlpha = 8,
        });
        var result = (Losses: run.Training.TrainLosses, OutputDirectory: run.FinalDirectory);
        Assert.True(result.Losses[^1] < result.Losses[0], $"loss went {string.Join(" → ", result.Losses)}");
        Assert.Equal(["happy", "sad"], SequenceClassification.ReadLabels(result.OutputDirectory).Labels);
        // Validation at the last step: the trainer's per-row accuracy and the hook's F1 (ClassificationMetrics).
        var last = LastMetrics(run.Training.RunDirectory);
        Assert.InRange(last["val_accuracy"]!.GetValue<double>(), 0, 1);
        Assert.InRange(last["val_macro_f1"]!.GetValue<double>(), 0, 1);
        Assert.InRange(last["accuracy"]!.GetValue<double>(), 0, 1);

        // PEFT's layout: peft_model.py PeftModelForSequenceClassification adds classifier and score to modules_to_save;
        // ModulesToSaveWrapper's weights are saved under the module's own path (utils/other.py adapter_state_dict; both at
        // huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40).
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(result.OutputDirectory, "adapter_config.json")))!.AsObject();
        Assert.Equal("LORA", config["peft_type"]!.GetValue<string>());
        Assert.Equal("SEQ_CLS", config["task_type"]!.GetValue<string>());
        Assert.Equal(["classifier", "score"], config["modules_to_save"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal(TestAssets.Stories260K, config["base_model_name_or_path"]!.GetValue<string>());
        var tensors = SafetensorsAdapterStore.Instance.Read(Path.Combine(result.OutputDirectory, "adapter_model.safetensors"));
        Assert.Equal(new long[] { 2, 64 }, tensors["base_model.model.score.weight"].shape);
        var loraKey = new Regex(@"^base_model\.model\.model\.layers\.\d\.self_attn\.[qv]_proj\.lora_[AB]\.weight$");
        Assert.All(tensors.Keys.Where(k => k != "base_model.model.score.weight"), k => Assert.Matches(loraKey, k));
        Assert.Equal(1 + 5 * 2 * 2, tensors.Count);
        foreach (var t in tensors.Values) t.Dispose();

        // Base + adapter, then merged and saved as a *ForSequenceClassification folder: the same logits after reloading.
        var labels = SequenceClassification.ReadLabels(result.OutputDirectory);
        using var classifier = SequenceClassifier.Load(TestAssets.Stories260K, labels);
        var adapter = PeftAdapters.Load(classifier.Model, result.OutputDirectory);
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var texts = new[] { "Tom was happy.", "The dog was sad and it cried a lot." }.Select(t => tokenizer.Encode(t, true).ToArray()).ToList();
        using var ids = SequenceClassification.RightPadded(texts, classifier);
        using var noGrad = no_grad();
        using var withAdapter = classifier.Logits(ids);
        adapter.MergeAndUnload();
        var merged = Path.Combine(temp.Path, "merged");
        classifier.Save(merged);
        using var reloaded = SequenceClassifier.Load(merged);
        Assert.Equal("LlamaForSequenceClassification", JsonNode.Parse(File.ReadAllText(Path.Combine(merged, "config.json")))!["architectures"]![0]!.GetValue<string>());
        using var mergedLogits = reloaded.Logits(ids);
        var expected = withAdapter.data<float>().ToArray();
        var actual = mergedLogits.data<float>().ToArray();
        // Merging rounds differently in fp32: a tolerance, not a count of decimal places (1.007849 and 1.007850 round apart).
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-4);
        // The trained head is not the untrained one: the adapter's score really reached the merged folder.
        using var fresh = SequenceClassifier.Load(TestAssets.Stories260K, labels);
        Assert.False(fresh.Score.weight!.allclose(reloaded.Score.weight!));
    }

    [SharedAssetFact("models/stories260K")]
    public void A_reward_run_lowers_the_pairwise_loss_and_reports_accuracy_on_held_out_pairs()
    {
        using var temp = new TempDir();
        var log = new List<string>();
        var result = FineTuneJob.Run(Options(WritePreferences(temp, margins: true), Path.Combine(temp.Path, "reward"), TrainingTasks.Reward) with
        {
            ValidationFraction = 0.25, LearningRate = 5e-3, MicroBatchSize = 9, MaxSteps = 6, CenterRewardsCoefficient = 0.01, Method = "full",
            Test = WritePreferences(temp, margins: true),
        }, log: log.Add);
        // TRL's RewardConfig: disable_dropout defaults to True.
        Assert.Contains(log, l => l.StartsWith("dropout off", StringComparison.Ordinal) && l.Contains("task reward"));
        var losses = result.Training.TrainLosses;
        Assert.True(losses[^1] < losses[0], $"loss went {string.Join(" → ", losses)}");
        // TRL's RewardTrainer metrics, in training and validation records and on the test pairs.
        var last = LastMetrics(result.Training.RunDirectory);
        foreach (var key in new[] { "accuracy", "margin", "mean_reward", "val_accuracy", "val_margin", "val_mean_reward" })
            Assert.True(last.ContainsKey(key), key);
        Assert.InRange(result.TestAccuracy!.Value, 0, 1);
        Assert.True(result.TestMetrics!.ContainsKey("margin"));
        using var reward = SequenceClassifier.Load(result.FinalDirectory);
        Assert.Equal(1, reward.Labels.NumLabels);
    }

    [SharedAssetFact("models/stories260K")]
    public void Pairs_are_tokenized_as_trls_reward_trainer_does()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var path = temp.File("pairs.jsonl",
            "{\"prompt\":\"Once upon a time\",\"chosen\":\" a cat sat.\",\"rejected\":\" dog\"}\n" +
            "{\"prompt\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"chosen\":[{\"role\":\"assistant\",\"content\":\"Hello there.\"}],\"rejected\":[{\"role\":\"assistant\",\"content\":\"Go.\"}]}\n");
        var chatml = ChatTemplate.BuiltIn("chatml");
        var (pairs, dropped) = SequenceClassificationData.Tokenize(SequenceClassificationData.ReadPreference(path), tokenizer, chatml, 64);
        Assert.Equal(0, dropped);
        // Plain text: prompt + answer with the special tokens, then EOS (TRL's add_eos step).
        Assert.Equal([.. tokenizer.Encode("Once upon a time a cat sat.", true), tokenizer.EosTokenId!.Value], pairs[0].Chosen);
        Assert.Equal([.. tokenizer.Encode("Once upon a time dog", true), tokenizer.EosTokenId!.Value], pairs[0].Rejected);
        // A conversation: the chat template's rendering of the prompt and answer turns, no special tokens added.
        var rendered = chatml.Render([new ChatMessage("user", "Hi"), new ChatMessage("assistant", "Hello there.")], addGenerationPrompt: false);
        Assert.Equal(tokenizer.Encode(rendered, false), pairs[1].Chosen);
        // Pairs with a side over max length are dropped, as TRL filters them.
        Assert.Equal(2, SequenceClassificationData.Tokenize(SequenceClassificationData.ReadPreference(path), tokenizer, chatml, 8).Dropped);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_full_regression_run_writes_a_regression_head_and_reports_mse()
    {
        using var temp = new TempDir();
        var rows = Enumerable.Range(0, 10).Select(i => new JsonObject { ["text"] = $"Tom had {i} red balls.", ["label"] = i / 10.0 });
        var data = temp.File("scores.jsonl", string.Join("\n", rows.Select(r => r.ToJsonString())) + "\n");
        var result = FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "reg"), TrainingTasks.Regression) with
        {
            Method = "full", ValidationFraction = 0.2, LearningRate = 1e-3, MicroBatchSize = 8, MaxSteps = 4,
        });
        var losses = result.Training.TrainLosses;
        Assert.True(losses[^1] < losses[0], $"loss went {string.Join(" → ", losses)}");
        Assert.True(LastMetrics(result.Training.RunDirectory).ContainsKey("val_mse"));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(result.FinalDirectory, "config.json")))!;
        Assert.Equal("regression", config["problem_type"]!.GetValue<string>());
        Assert.Equal(1, config["num_labels"]!.GetValue<int>());
    }

    [SharedAssetFact("models/stories260K")]
    public void A_label_outside_the_label_set_is_an_error_naming_file_and_line()
    {
        using var temp = new TempDir();
        var path = temp.File("bad.jsonl", "{\"text\":\"a\",\"label\":\"happy\"}\n{\"text\":\"b\",\"label\":\"angry\"}\n");
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var error = Assert.Throws<DataFormatException>(() =>
            SequenceClassificationData.Tokenize(SequenceClassificationData.ReadClassification(path), tokenizer, ["happy", "sad"], false, 64));
        Assert.Contains($"{path}:2", error.Message);
        Assert.Contains("angry", error.Message);
        var regression = Assert.Throws<DataFormatException>(() =>
            SequenceClassificationData.Tokenize(SequenceClassificationData.ReadClassification(path), tokenizer, ["LABEL_0"], true, 64));
        Assert.Contains($"{path}:1", regression.Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_pair_without_rejected_or_with_a_stray_margin_is_an_error_naming_file_and_line()
    {
        using var temp = new TempDir();
        var missing = temp.File("missing.jsonl", "{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}\n{\"prompt\":\"a\",\"chosen\":\"b\"}\n");
        var error = Assert.ThrowsAny<Exception>(() => SequenceClassificationData.ReadPreference(missing));
        Assert.Contains($"{missing}:2", error.Message);
        var margins = temp.File("margins.jsonl", "{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\",\"margin\":1}\n{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}\n");
        var stray = Assert.Throws<DataFormatException>(() => FineTuneJob.Run(
            Options(margins, Path.Combine(temp.Path, "out"), TrainingTasks.Reward) with { ValidationFraction = 0, MaxSteps = 1 }));
        Assert.Contains($"{margins}:2", stray.Message);
    }
}
