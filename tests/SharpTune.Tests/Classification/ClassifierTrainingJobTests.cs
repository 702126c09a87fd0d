using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Tests.Support;
using SharpTune.Tests.Training;
using SharpTune.Tokenization;
using SharpTune.Tracking;
using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

/// <summary>
/// Classification, regression and reward heads on the common trainer (<see cref="TrainingOptions.Task"/>): exact
/// accumulation over rows and pairs, resume restoring the score head and adapter, the YAML option, and refusals.
/// </summary>
public class ClassifierTrainingJobTests
{
    private static string WriteClassification(TempDir temp, int rows = 8)
    {
        // Lengths differ from row to row, so micro-batches pad differently from one whole batch.
        var lines = Enumerable.Range(0, rows).Select(i => i % 2 == 0
            ? new JsonObject { ["text"] = $"Tom was happy{string.Concat(Enumerable.Repeat(" and glad", i % 3))} {i}.", ["label"] = "happy" }
            : new JsonObject { ["text"] = $"The dog was sad {i}.", ["label"] = "sad" });
        return temp.File("classes.jsonl", string.Join("\n", lines.Select(l => l.ToJsonString())) + "\n");
    }

    private static string WritePreferences(TempDir temp, int rows = 8)
    {
        var lines = Enumerable.Range(0, rows).Select(i => new JsonObject
        {
            ["prompt"] = "Once upon a time", ["chosen"] = $" there was a happy girl{string.Concat(Enumerable.Repeat(" who sang", i % 3))}.",
            ["rejected"] = $" dog dog {i}",
        });
        return temp.File("pairs.jsonl", string.Join("\n", lines.Select(l => l.ToJsonString())) + "\n");
    }

    private static TrainingOptions Options(string data, string output, string task) =>
        SequenceClassificationTrainingTests.Options(data, output, task) with
        {
            ValidationFraction = 0, LearningRate = 5e-3, LoraR = 4, LoraAlpha = 8, DisableDropout = true,
        };

    [SharedAssetTheory("models/stories260K")]
    [InlineData(TrainingTasks.SequenceClassification)]
    [InlineData(TrainingTasks.Reward)]
    public void Two_micro_batches_of_two_train_exactly_as_one_batch_of_four(string task)
    {
        using var temp = new TempDir();
        var data = task == TrainingTasks.Reward ? WritePreferences(temp) : WriteClassification(temp);
        var accumulated = FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "accumulated"), task) with
            { MicroBatchSize = 2, GradientAccumulation = 2, MaxSteps = 2 });
        var whole = FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "whole"), task) with
            { MicroBatchSize = 4, GradientAccumulation = 1, MaxSteps = 2 });

        Assert.Equal(2, accumulated.Training.TrainLosses.Count);
        for (var step = 0; step < 2; step++)
            Assert.Equal(whole.Training.TrainLosses[step], accumulated.Training.TrainLosses[step], 5);
        var expected = AdapterAssertions.SavedTensors(whole.FinalDirectory);
        var actual = AdapterAssertions.SavedTensors(accumulated.FinalDirectory);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        Assert.Contains("base_model.model.score.weight", expected.Keys);
        foreach (var (name, values) in expected)
            for (var i = 0; i < values.Length; i++)
                Assert.True(Math.Abs(values[i] - actual[name][i]) <= 1e-5 + 1e-4 * Math.Abs(values[i]), $"{name}[{i}]: {values[i]} vs {actual[name][i]}");
        // The steps changed the head: equal weights are not two untouched copies of the run's initial head (seeded by seed).
        manual_seed(7);
        using var untrained = SequenceClassifier.Load(TestAssets.Stories260K,
            task == TrainingTasks.Reward ? SequenceClassificationConfig.Reward(0) : new SequenceClassificationConfig(["happy", "sad"], null, 0));
        var initial = untrained.Score.weight!.data<float>().ToArray();
        Assert.Equal(initial.Length, expected["base_model.model.score.weight"].Length);
        Assert.NotEqual(initial, expected["base_model.model.score.weight"]);
    }

    /// <summary>
    /// QLoRA for a classifier (PEFT + bitsandbytes on AutoModelForSequenceClassification): every decoder projection is
    /// quantized, the score head is not (bitsandbytes skips the output module) and stays fp32; a LoRA run on that base
    /// lowers its loss, saves the head beside the adapter, and the adapter loads on the unquantized base.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public void A_classifier_trains_lora_on_an_nf4_base_with_the_score_head_whole()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        using (var classifier = SequenceClassifier.Load(TestAssets.Stories260K, new SequenceClassificationConfig(["happy", "sad"], null, tokenizer.EosTokenId)))
        {
            var linears = SharpTune.Quantization.ModelQuantizer.Targets(classifier.Model).Count;
            SequenceClassificationRecipe.QuantizeDecoder(classifier, SharpTune.Quantization.QuantizationOptions.Parse("nf4", "bf16", "true", "quantize"));
            Assert.Equal(linears, SharpTune.Quantization.ModelQuantizer.QuantizedLayers(classifier.Model).Count);
            Assert.Equal(5 * 7, linears);   // stories260K: 5 layers of q, k, v, o, gate, up, down
            Assert.Equal(ScalarType.Float32, classifier.Score.weight!.dtype);
        }

        using var temp = new TempDir();
        var log = new List<string>();
        var result = FineTuneJob.Run(Options(WriteClassification(temp, 12), Path.Combine(temp.Path, "qlora"), TrainingTasks.SequenceClassification) with
        {
            Quantize = "nf4", MicroBatchSize = 12, MaxSteps = 6,
        }, log: log.Add);
        Assert.Contains(log, l => l.StartsWith("base quantized: nf4", StringComparison.Ordinal));
        var losses = result.Training.TrainLosses;
        Assert.True(losses[^1] < losses[0], $"loss went {string.Join(" → ", losses)}");
        var saved = AdapterAssertions.SavedTensors(result.FinalDirectory);
        Assert.Equal(2 * 64, saved["base_model.model.score.weight"].Length);
        Assert.Contains(saved.Keys, k => k.EndsWith("lora_A.weight", StringComparison.Ordinal));
        var onFullPrecision = TextClassifier.Load(TestAssets.Stories260K, result.FinalDirectory).Score(["Tom was happy.", "The dog was sad."]);
        Assert.All(onFullPrecision, s => Assert.Equal(1.0, s.Probabilities!.Sum(), 5));
    }

    [SharedAssetFact("models/stories260K")]
    public void A_classifier_of_a_family_transformers_cannot_load_is_saved_with_a_warning_in_the_log()
    {
        using var temp = new TempDir();
        // A tiny Granite with stories260K's tokenizer (its 512 ids): transformers has no GraniteForSequenceClassification.
        var granite = Path.Combine(temp.Path, "granite");
        manual_seed(3);
        using (var model = ModelFactory.Create(ModelConfig.FromJson(TestModels.GraniteConfigJson(vocab: 512))))
            PretrainedModel.Save(model, granite);
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, granite);
        var log = new List<string>();
        var result = FineTuneJob.Run(Options(WriteClassification(temp, 4), Path.Combine(temp.Path, "run"), TrainingTasks.SequenceClassification) with
        {
            Model = granite, Method = "full", MaxSteps = 1,
        }, log: log.Add);
        Assert.Contains(log, l => l.Contains("GraniteForSequenceClassification") && l.Contains("AutoModelForSequenceClassification"));
        // Still written, and SharpTune loads it back.
        using var loaded = SequenceClassifier.Load(result.FinalDirectory);
        Assert.Equal("GraniteForSequenceClassification", loaded.Architecture);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_bitsandbytes_folder_is_refused_for_a_head_task_by_name()
    {
        using var temp = new TempDir();
        var quantized = Path.Combine(temp.Path, "bnb");
        SharpTune.Quantization.ModelQuantizer.SaveQuantized(TestAssets.Stories260K, quantized, SharpTune.Quantization.QuantizationOptions.Parse("nf4", "bf16", "true", "quantize"));
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Run(
            Options(WriteClassification(temp), Path.Combine(temp.Path, "out"), TrainingTasks.SequenceClassification) with { Model = quantized, MaxSteps = 1 }));
        Assert.Contains("quantize: nf4", error.Message);
    }

    /// <summary>
    /// The score head's weight gradient after accumulating <paramref name="split"/> as micro-batches of one optimizer step
    /// (the gradient is zeroed first).
    /// </summary>
    internal static float[] ScoreHeadGradient(SequenceClassifier classifier, ITrainingObjective objective, int? padTokenId,
        params IReadOnlyList<ClassificationItem>[] split)
    {
        classifier.Model.zero_grad();
        var totals = Trainer.AccumulateGradients(classifier.Model, objective,
            split.Select(b => (TrainingBatch)ClassifierCollator.Classification(b, padTokenId, false, classifier.Model.Device)).ToArray());
        Assert.Equal(split.Sum(b => b.Count), totals.Units);
        return classifier.Score.weight!.grad!.data<float>().ToArray();
    }

    [SharedAssetFact("models/stories260K")]
    public void Uneven_micro_batches_give_the_gradient_of_the_whole_batch()
    {
        // 3 + 1 rows: a per-micro-batch mean would weight the single row three times as much as each of the others.
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var labels = new SequenceClassificationConfig(["happy", "sad"], null, tokenizer.EosTokenId);
        using var classifier = SequenceClassifier.Load(TestAssets.Stories260K, labels);
        foreach (var p in classifier.Model.parameters()) p.requires_grad = true;
        var items = SequenceClassificationData.Tokenize(SequenceClassificationData.ReadClassification(WriteClassification(temp, 4)),
            tokenizer, labels.Labels, false, 64);
        var objective = new SequenceClassificationObjective(classifier);
        var whole = ScoreHeadGradient(classifier, objective, labels.PadTokenId, items);
        var split = ScoreHeadGradient(classifier, objective, labels.PadTokenId, items.Take(3).ToList(), items.Skip(3).ToList());
        Assert.Contains(whole, g => g != 0);
        // Equal to float32 rounding (the shapes differ), measured against the gradient's size.
        var scale = whole.Max(Math.Abs);
        for (var i = 0; i < whole.Length; i++)
            Assert.True(Math.Abs(whole[i] - split[i]) <= 1e-5 * scale, $"[{i}]: {whole[i]} vs {split[i]}");
        // A mean per micro-batch, (mean of 3 + mean of 1) / 2, is not the whole batch's mean: the test can tell them apart.
        var first = ScoreHeadGradient(classifier, objective, labels.PadTokenId, items.Take(3).ToList());
        var last = ScoreHeadGradient(classifier, objective, labels.PadTokenId, items.Skip(3).ToList());
        Assert.Contains(Enumerable.Range(0, whole.Length), i => Math.Abs((first[i] + last[i]) / 2 - whole[i]) > 1e-3 * scale);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_killed_classifier_run_resumes_to_the_same_losses_score_head_and_adapter()
    {
        using var temp = new TempDir();
        var data = WriteClassification(temp, 12);
        var options = Options(data, Path.Combine(temp.Path, "uninterrupted"), TrainingTasks.SequenceClassification) with
            { MicroBatchSize = 2, GradientAccumulation = 2, MaxSteps = 4, SaveEvery = 2, KeepCheckpoints = 5 };
        var uninterrupted = FineTuneJob.Run(options);
        var killed = options with { Output = Path.Combine(temp.Path, "resumed") };
        KilledRun.StopAfterStep(killed, 3);
        // The checkpoint holds the score head beside the adapter's factors.
        var checkpoint = TrainingCheckpoint.List(killed.Output).Last();
        using (var saved = SafetensorsFile.Open(Path.Combine(checkpoint, "trainable.safetensors")))
            Assert.Contains(saved.Tensors.Keys, k => k.EndsWith("score.weight", StringComparison.Ordinal));
        var resumed = FineTuneJob.Run(killed, resume: true);

        var expected = KilledRun.AssertResumedAsUninterrupted(uninterrupted, resumed);
        Assert.Contains("base_model.model.score.weight", expected.Keys);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_regression_run_validates_every_eval_step_and_keeps_its_best_head()
    {
        using var temp = new TempDir();
        var lines = Enumerable.Range(0, 10).Select(i => new JsonObject { ["text"] = $"Tom ran {i} times.", ["label"] = 0.5 * i });
        var data = temp.File("scores.jsonl", string.Join("\n", lines.Select(l => l.ToJsonString())) + "\n");
        var result = FineTuneJob.Run(Options(data, Path.Combine(temp.Path, "run"), TrainingTasks.Regression) with
            { ValidationFraction = 0.3, MicroBatchSize = 4, MaxSteps = 3, EvalEvery = 1 });

        var records = MetricsLog.ReadAll(Path.Combine(result.Training.RunDirectory, "metrics.jsonl"));
        Assert.Equal(3, records.Count);
        foreach (var record in records)
        {
            // The MSE loss is the mean squared error over rows: the logged mse (summed squared errors / rows) equals it.
            Assert.Equal(record["loss"]!.GetValue<double>(), record["mse"]!.GetValue<double>(), 4);
            Assert.Equal(record["val_loss"]!.GetValue<double>(), record["val_mse"]!.GetValue<double>(), 4);
        }
        Assert.Equal(records.Min(r => r["val_loss"]!.GetValue<double>()), result.Training.BestValidationLoss!.Value, 6);
        var best = Path.Combine(result.Training.RunDirectory, "best");
        Assert.Equal(SequenceClassificationConfig.Regression, SequenceClassification.ReadLabels(best).ProblemType);
        Assert.Equal(SequenceClassificationConfig.Regression, SequenceClassification.ReadLabels(result.FinalDirectory).ProblemType);
    }

    [Fact]
    public void The_task_and_reward_centring_are_read_from_yaml_and_written_back()
    {
        using var temp = new TempDir();
        var path = temp.File("reward.yaml", "model: m\ndata: pairs.jsonl\ntask: reward\ncenter_rewards_coefficient: 0.01\nmethod: lora\n");
        var options = TrainingConfigFile.Load(path);
        Assert.Equal(TrainingTasks.Reward, options.Task);
        Assert.Equal(0.01, options.CenterRewardsCoefficient);
        FineTuneJob.Validate(options);
        var yaml = TrainingConfigFile.ToYaml(options);
        Assert.Contains("task: reward", yaml);
        Assert.Contains("center_rewards_coefficient: 0.01", yaml);
        Assert.Equal(TrainingTasks.CausalLm, TrainingConfigFile.Load(temp.File("plain.yaml", "model: m\n")).Task);
    }

    [Theory]
    [InlineData("sequence_classification", "objective: dpo", "objective dpo")]
    [InlineData("sequence_classification", "beta: 0.1", "beta (--beta)")]
    [InlineData("regression", "loss_type: ipo", "loss_type (--loss-type)")]
    [InlineData("reward", "packing: true", "packing (--packing)")]
    [InlineData("reward", "method: prompt-tuning", "method prompt-tuning (--method)")]
    [InlineData("reward", "quantize: nf4\nquantize_lm_head: true", "quantize_lm_head (--quantize-lm-head)")]
    [InlineData("sequence_classification", "center_rewards_coefficient: 0.1", "center_rewards_coefficient")]
    [InlineData("causal_lm", "center_rewards_coefficient: 0.1", "center_rewards_coefficient")]
    [InlineData("classify", "", "task (--task)")]
    public void Settings_that_cannot_apply_to_the_task_are_refused_by_name(string task, string setting, string named)
    {
        using var temp = new TempDir();
        var options = TrainingConfigFile.Load(temp.File("bad.yaml", $"model: m\ndata: d.jsonl\ntask: {task}\n{setting}\n"));
        var error = Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options));
        Assert.Contains(named, error.Message);
    }
}
