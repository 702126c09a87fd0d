using SharpTune.Classification;
using SharpTune.Models;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

public class TextClassifierScoringTests
{
    private static readonly string[] Texts = ["Once upon a time there was a cat.", "The dog ran to the park."];

    // stories260K with a random head of the given labels, saved as a *ForSequenceClassification folder with its tokenizer.
    private static string SaveClassifier(TempDir temp, SequenceClassificationConfig labels)
    {
        manual_seed(11);
        using (var classifier = SequenceClassifier.Load(TestAssets.Stories260K, labels))
        {
            using (no_grad()) classifier.Score.weight!.normal_(0, 1);
            classifier.Save(temp.Path);
        }
        PretrainedModel.CopyCompanionFiles(TestAssets.Stories260K, temp.Path);
        return temp.Path;
    }

    private static float[] Logits(TextClassifier model, int[] ids)
    {
        using var noGrad = no_grad();
        using var logits = model.Classifier.Logits(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]));
        return logits[0].data<float>().ToArray();
    }

    private static void AssertClose(IReadOnlyList<float> expected, IReadOnlyList<float> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * Math.Abs(expected[i]) + 1e-5, $"[{i}] {expected[i]} vs {actual[i]}");
    }

    [SharedAssetFact("models/stories260K")]
    public void A_multi_label_head_reports_sigmoid_probabilities_and_every_label_over_one_half()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var labels = new SequenceClassificationConfig(["a", "b", "c", "d"], SequenceClassificationConfig.MultiLabelClassification, tokenizer.EosTokenId);
        using var model = TextClassifier.Load(SaveClassifier(temp, labels));
        var scores = model.Score(Texts);
        foreach (var (text, score) in Texts.Zip(scores))
        {
            var logits = Logits(model, [.. tokenizer.Encode(text, addSpecialTokens: true)]);
            // transformers' pipeline: sigmoid(x) = 1 / (1 + e^-x) per label, independent of the others.
            var sigmoid = logits.Select(x => (float)(1 / (1 + Math.Exp(-x)))).ToArray();
            AssertClose(sigmoid, score.Probabilities!);
            Assert.Equal(labels.Labels.Where((_, i) => sigmoid[i] > 0.5f), score.PredictedLabels!);
            Assert.Equal(labels.Labels[Array.IndexOf(logits, logits.Max())], score.Label);
        }
        // Labels on both sides of 0.5 across the texts, so the threshold is exercised both ways.
        Assert.InRange(scores.Sum(s => s.PredictedLabels!.Count), 1, 2 * labels.NumLabels - 1);
    }

    [SharedAssetFact("models/stories260K")]
    public void A_single_label_head_reports_softmax_probabilities_and_the_argmax_label()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var labels = new SequenceClassificationConfig(["neg", "neu", "pos"], SequenceClassificationConfig.SingleLabelClassification, tokenizer.EosTokenId);
        using var model = TextClassifier.Load(SaveClassifier(temp, labels));
        foreach (var (text, score) in Texts.Zip(model.Score(Texts)))
        {
            var logits = Logits(model, [.. tokenizer.Encode(text, addSpecialTokens: true)]);
            var exp = logits.Select(x => Math.Exp(x - logits.Max())).ToArray();
            AssertClose(exp.Select(e => (float)(e / exp.Sum())).ToArray(), score.Probabilities!);
            Assert.Equal(labels.Labels[Array.IndexOf(logits, logits.Max())], score.Label);
            Assert.Null(score.PredictedLabels);
        }
    }

    [SharedAssetFact("models/stories260K")]
    public void A_regression_head_reports_only_its_logits()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        // Two outputs with problem_type regression: the old code softmaxed any head with more than one output.
        var labels = new SequenceClassificationConfig(["x", "y"], SequenceClassificationConfig.Regression, tokenizer.EosTokenId);
        using var model = TextClassifier.Load(SaveClassifier(temp, labels));
        foreach (var (text, score) in Texts.Zip(model.Score(Texts)))
        {
            AssertClose(Logits(model, [.. tokenizer.Encode(text, addSpecialTokens: true)]), score.Logits);
            Assert.Null(score.Probabilities);
            Assert.Null(score.Label);
            Assert.Null(score.PredictedLabels);
        }
    }

    [SharedAssetFact("models/stories260K")]
    public void A_reward_head_is_read_at_the_eos_its_training_appended_unless_told_otherwise()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        // A pad id other than EOS (0, <unk>), as with a tokenizer that has a pad token: with pad = EOS the appended EOS
        // counts as padding and the head reads the token before it either way (GenericForSequenceClassification's pooling).
        using var model = TextClassifier.Load(SaveClassifier(temp, SequenceClassificationConfig.Reward(0)));
        Assert.True(model.Classifier.Labels.IsRewardHead);
        var byDefault = model.Score(Texts);
        var asIs = model.Score(Texts, appendEos: false);
        for (var i = 0; i < Texts.Length; i++)
        {
            // Training's encoding (SequenceClassificationData.EncodeForReward, TRL's add_eos): BOS + text + EOS.
            var trained = SequenceClassificationData.EncodeForReward(Texts[i], tokenizer);
            Assert.Equal(tokenizer.EosTokenId, trained[^1]);
            AssertClose(Logits(model, trained), byDefault[i].Logits);
            var plain = tokenizer.Encode(Texts[i], addSpecialTokens: true).ToArray();
            AssertClose(Logits(model, plain), asIs[i].Logits);
            Assert.True(Math.Abs(byDefault[i].Score - asIs[i].Score) > 1e-3, $"{byDefault[i].Score} vs {asIs[i].Score}");
        }
    }

    [SharedAssetFact("models/stories260K")]
    public void The_grpo_reward_model_is_loaded_on_the_device_it_is_given()
    {
        using var temp = new TempDir();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var dir = SaveClassifier(temp, SequenceClassificationConfig.Reward(tokenizer.EosTokenId));
        // The meta device exists on every build, so the device is seen to reach the model without a GPU (CPU is the default).
        var meta = new Device(DeviceType.META);
        var rewards = SharpTune.Training.Rewards.RewardRegistry.Create(
            new SharpTune.Training.TrainingOptions { Rewards = ["reward-model"], RewardModel = dir }, device: meta);
        using var reward = Assert.IsType<SharpTune.Training.Rewards.RewardModelReward>(rewards[0].Function);
        Assert.Equal(DeviceType.META, reward.Model.Classifier.Model.Device.type);
        Assert.Equal(DeviceType.META, reward.Model.Classifier.Score.weight!.device_type);
        using var onCpu = TextClassifier.Load(dir);
        Assert.Equal(DeviceType.CPU, onCpu.Classifier.Model.Device.type);
    }
}
