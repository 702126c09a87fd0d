using System.Text.Json.Nodes;
using SharpTune.Classification;
using SharpTune.Models;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using SharpTune.Training.Rewards;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

public class ClassifierUseTests
{
    [SharedAssetFact("models/stories260K")]
    public async Task A_reward_model_reward_is_the_first_logit_of_prompt_plus_completion_without_special_tokens()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        using (var reward = SequenceClassifier.Load(TestAssets.Stories260K, SequenceClassificationConfig.Reward(tokenizer.EosTokenId)))
        {
            manual_seed(7);   // the head's draw must not depend on the tests run before
            using (no_grad()) reward.Score.weight!.normal_(0, 1);
            reward.Save(temp.Path);
        }
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, temp.Path);
        using var model = TextClassifier.Load(temp.Path);
        var fields = new JsonObject { ["prompt"] = "Once upon a time" };
        RewardSample Sample(int index, string completion) =>
            new(index, "Once upon a time", completion, [new SharpTune.Data.ChatTurn("user", "Once upon a time")], fields, 5, false, "x.jsonl:1");
        var samples = new[] { Sample(0, " there was a cat."), Sample(1, " a dog ran far away to the big park.") };
        var scores = await new RewardModelReward(model).ScoreAsync(samples, CancellationToken.None);

        // Each text alone, as TRL's GRPOTrainer tokenizes it (add_special_tokens=False), read at its last token.
        using var noGrad = no_grad();
        for (var i = 0; i < samples.Length; i++)
        {
            var ids = tokenizer.Encode(samples[i].Prompt + samples[i].Completion, addSpecialTokens: false).Select(t => (long)t).ToArray();
            using var alone = model.Classifier.Logits(tensor(ids, [1, ids.Length]));
            // A batch of two pads to another shape than one row alone, so libtorch sums in another order: equal to float32
            // rounding through five layers (1.6e-5 apart was seen), far below what a leading BOS moves the score.
            var expected = alone.item<float>();
            Assert.True(Math.Abs(expected - scores[i]!.Value) <= 1e-4, $"{expected} vs {scores[i]}");
            var withBos = tokenizer.Encode(samples[i].Prompt + samples[i].Completion, addSpecialTokens: true).Select(t => (long)t).ToArray();
            using var special = model.Classifier.Logits(tensor(withBos, [1, withBos.Length]));
            Assert.True(Math.Abs(special.item<float>() - scores[i]!.Value) > 1e-3, $"with BOS {special.item<float>()} vs {scores[i]}");
        }
        Assert.NotEqual(scores[0], scores[1]);
    }

    private static string SaveRandomRewardModel(TempDir temp, int? padTokenId = null)
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var dir = Path.Combine(temp.Path, "rm");
        using (var reward = SequenceClassifier.Load(TestAssets.Stories260K, SequenceClassificationConfig.Reward(padTokenId ?? tokenizer.EosTokenId)))
        {
            using (no_grad()) reward.Score.weight!.normal_(0, 1);
            reward.Save(dir);
        }
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, dir);
        return dir;
    }

    [SharedAssetFact("models/stories260K")]
    public void Grpo_trains_against_a_reward_model_named_in_the_options()
    {
        using var temp = new TempDir();
        var rm = SaveRandomRewardModel(temp);
        var prompts = temp.File("prompts.jsonl", string.Join("\n", Enumerable.Range(0, 8).Select(i => new JsonObject { ["prompt"] = $"Once upon a time, Tom had {i} balls." }.ToJsonString())) + "\n");
        var options = new SharpTune.Training.TrainingOptions
        {
            Model = TestAssets.Stories260K, Data = prompts, ValidationFraction = 0, Output = Path.Combine(temp.Path, "run"), Objective = "grpo",
            Method = "lora", LearningRate = 1e-2, MicroBatchSize = 4, NumGenerations = 4, MaxCompletionLength = 8, MaxSteps = 1,
            Rewards = ["reward-model=0.5"], RewardModel = rm, Seed = 3,
        };
        SharpTune.Training.FineTuneJob.Run(options);
        var record = SharpTune.Tracking.MetricsLog.ReadAll(Path.Combine(options.Output, "metrics.jsonl"))[^1];
        var mean = record["rewards/reward_model/mean"]!.GetValue<double>();
        Assert.True(record["rewards/reward_model/std"]!.GetValue<double>() > 0);   // the model tells completions apart
        Assert.Equal(0.5 * mean, record["reward"]!.GetValue<double>(), 6);
        Assert.Contains("reward_model", Assert.Throws<ArgumentException>(() =>
            RewardRegistry.Create(new SharpTune.Training.TrainingOptions { Rewards = ["reward-model"] })).Message);
    }

    [SharedAssetFact("models/stories260K")]
    public void Classify_score_reads_a_reward_model_at_the_eos_training_appended_and_no_eos_opts_out()
    {
        using var temp = new TempDir();
        // Pad id 0 (<unk>), not EOS: with pad = EOS the appended EOS counts as padding and is never read.
        var dir = SaveRandomRewardModel(temp, padTokenId: 0);
        const string text = "Tom was happy.";
        double Cli(params string[] extra)
        {
            var (code, stdout, stderr) = SharpTuneCli.Run(["classify", "score", "--model", dir, "--text", text, .. extra]);
            Assert.True(code == 0, stderr);
            return JsonNode.Parse(stdout.Trim())!["score"]!.GetValue<double>();
        }
        using var model = TextClassifier.Load(dir);
        Assert.Equal(model.Score([text])[0].Score, Cli(), 5);
        Assert.Equal(model.Score([text], appendEos: false)[0].Score, Cli("--no-eos"), 5);
        Assert.True(Math.Abs(Cli() - Cli("--no-eos")) > 1e-3);
    }

    [SharedAssetFact("models/stories260K")]
    public void Classify_score_lists_the_labels_a_multi_label_head_predicts()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        manual_seed(5);
        using (var classifier = SequenceClassifier.Load(TestAssets.Stories260K, new SequenceClassificationConfig(
                   ["a", "b", "c", "d", "e", "f"], SequenceClassificationConfig.MultiLabelClassification, tokenizer.EosTokenId)))
        {
            using (no_grad()) classifier.Score.weight!.normal_(0, 1);
            classifier.Save(temp.Path);
        }
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, temp.Path);
        var (code, stdout, stderr) = SharpTuneCli.Run("classify", "score", "--model", temp.Path, "--text", "Tom was happy.");
        Assert.True(code == 0, stderr);
        var line = JsonNode.Parse(stdout.Trim())!;
        using var model = TextClassifier.Load(temp.Path);
        var expected = model.Score(["Tom was happy."])[0];
        Assert.Equal(expected.PredictedLabels!, line["labels"]!.AsArray().Select(l => l!.GetValue<string>()));
        Assert.Equal(expected.Label, line["label"]!.GetValue<string>());
        Assert.Equal(expected.Probabilities![2], line["probabilities"]!["c"]!.GetValue<float>(), 5);
    }

    [SharedAssetFact("models/stories260K")]
    public void The_cli_reports_a_regression_head_by_its_mean_squared_error()
    {
        using var temp = new TempDir();
        var rows = Enumerable.Range(0, 8).Select(i => new JsonObject { ["text"] = $"Tom ran {i} times.", ["label"] = i });
        var data = temp.File("scores.jsonl", string.Join("\n", rows.Select(r => r.ToJsonString())) + "\n");
        var train = SharpTuneCli.Run("train", "--task", "regression", "--model", TestAssets.Stories260K, "--data", data,
            "--output", Path.Combine(temp.Path, "run"), "--max-steps", "2", "--test", data);
        Assert.True(train.ExitCode == 0, train.Stderr);
        Assert.Contains("val_mse", train.Stderr);
        Assert.Matches(@"test: loss \d+\.\d{4}, mse \d+\.\d{4}", train.Stderr);
        Assert.DoesNotContain("val_acc", train.Stderr);
    }

    [SharedAssetFact("models/stories260K")]
    public void The_cli_trains_scores_and_merges_a_classifier()
    {
        using var temp = new TempDir();
        var rows = Enumerable.Range(0, 8).Select(i => new JsonObject { ["text"] = i % 2 == 0 ? $"Tom was happy {i}." : $"The dog was sad {i}.", ["label"] = i % 2 == 0 ? "happy" : "sad" });
        var data = temp.File("train.jsonl", string.Join("\n", rows.Select(r => r.ToJsonString())) + "\n");
        var run = Path.Combine(temp.Path, "run");
        var train = SharpTuneCli.Run("train", "--task", "sequence_classification", "--model", TestAssets.Stories260K, "--data", data, "--output", run,
            "--max-steps", "2", "--lr", "1e-2", "--lora-r", "4", "--test", data);
        Assert.True(train.ExitCode == 0, train.Stderr);
        Assert.Contains("macro F1", train.Stderr);
        Assert.Contains("val_acc", train.Stderr);
        var adapter = train.Stdout.Trim();
        Assert.Equal(Path.Combine(run, "final"), adapter);

        var scored = SharpTuneCli.Run("classify", "score", "--model", TestAssets.Stories260K, "--adapter", adapter, "--text", "Tom was happy.", "--text", "The dog was sad.");
        Assert.True(scored.ExitCode == 0, scored.Stderr);
        var lines = scored.Stdout.Trim().Split('\n').Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(2, lines.Count);
        foreach (var line in lines)
        {
            var probabilities = line["probabilities"]!.AsObject();
            Assert.Equal(1.0, probabilities.Sum(p => p.Value!.GetValue<double>()), 4);
            Assert.Equal(probabilities.MaxBy(p => p.Value!.GetValue<double>()).Key, line["label"]!.GetValue<string>());
        }

        var merged = Path.Combine(temp.Path, "merged");
        var merge = SharpTuneCli.Run("merge", "--model", TestAssets.Stories260K, "--adapter", adapter, "--out", merged);
        Assert.True(merge.ExitCode == 0, merge.Stderr);
        var again = SharpTuneCli.Run("classify", "score", "--model", merged, "--text", "Tom was happy.", "--text", "The dog was sad.");
        Assert.True(again.ExitCode == 0, again.Stderr);
        var mergedLines = again.Stdout.Trim().Split('\n').Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        for (var i = 0; i < 2; i++)
            foreach (var (label, p) in lines[i]["probabilities"]!.AsObject())
                Assert.Equal(p!.GetValue<double>(), mergedLines[i]["probabilities"]![label]!.GetValue<double>(), 4);

        var bad = temp.File("bad.jsonl", "{\"text\":\"x\",\"label\":\"happy\"}\n{\"text\":\"y\",\"label\":\"angry\"}\n");
        var refused = SharpTuneCli.Run("train", "--task", "sequence_classification", "--model", merged, "--data", bad, "--output", Path.Combine(temp.Path, "x"), "--max-steps", "1");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains($"{bad}:2", refused.Stderr);
    }
}
