using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// RLOO's advantages, KL-in-reward and loss worked by hand from TRL's formulas (huggingface/trl@f2cd577,
/// trl/trainer/rloo_trainer.py, <c>_generate_and_score_completions</c> and <c>_compute_loss</c>).
/// </summary>
public class RlooObjectiveTests
{
    private static double[,] Column(params double[] values)
    {
        var scores = new double[values.Length, 1];
        for (var i = 0; i < values.Length; i++) scores[i, 0] = values[i];
        return scores;
    }

    [Fact]
    public void LeaveOneOutBaselinesUseOnlyTheScorableSiblings()
    {
        // G = 3. Group 1 [1, 2, 6]: baselines (8/2, 7/2, 3/2) → A = (−3, −1.5, 4.5).
        // Group 2 [–, 2, 5]: the unscorable row is left out of the others' baselines (2 − 5, 5 − 2) and gets 0.
        // Group 3 [–, –, 4]: the lone scorable completion has no sibling (0/0) → 0, as the unscorable.
        var result = RlooAdvantages.Compute(Column(1, 2, 6, double.NaN, 2, 5, double.NaN, double.NaN, 4), [1.0], 3, null, 0, null, false);
        Assert.Equal([-3, -1.5, 4.5, 0, -3, 3, 0, 0, 0], result.Advantages);
        Assert.True(double.IsNaN(result.Rewards[3]));
        Assert.Equal((1 + 2 + 6 + 2 + 5 + 4) / 6.0, result.RewardMean, 12);
        Assert.Equal(0.0, result.FracRewardZeroStd);   // group 3's std is NaN (one scorable), not 0
    }

    [Fact]
    public void WeightedFunctionsAreSummedSkippingTheOnesThatDidNotScore()
    {
        // Two functions, weights (1, 0.5); row 1's second function returned nothing (nansum), row 3 was scored by none.
        var scores = new double[,] { { 1, 2 }, { 3, double.NaN }, { 0, 4 }, { double.NaN, double.NaN } };
        var result = RlooAdvantages.Compute(scores, [1.0, 0.5], 2, null, 0, null, false);
        // Rewards (2, 3 | 2, –): A = (2 − 3, 3 − 2 | 0 (lone), 0).
        Assert.Equal([-1, 1, 0, 0], result.Advantages);
        Assert.Equal(2.0, result.Rewards[2]);
    }

    [Fact]
    public void NormalizeAdvantagesScalesOverTheScorableSubsetOnly()
    {
        var result = RlooAdvantages.Compute(Column(1, 2, 6, double.NaN, 2, 5), [1.0], 3, null, 0, null, normalize: true);
        // Scorable advantages (−3, −1.5, 4.5, −3, 3): mean 0, unbiased std √(49.5/4).
        var std = Math.Sqrt(49.5 / 4);
        double[] raw = [-3, -1.5, 4.5, double.NaN, -3, 3];
        for (var i = 0; i < raw.Length; i++)
            Assert.Equal(double.IsNaN(raw[i]) ? 0 : raw[i] / (std + 1e-4), result.Advantages[i], 12);
    }

    [Fact]
    public void TheKlPenaltyComesOffTheRewardAfterClippingAndBeforeTheBaseline()
    {
        // Rewards (−5, 0.5, 5) clipped to [−1, 1] → (−1, 0.5, 1); KL sums (2, −1, 0.5), β = 0.1 → (−1.2, 0.6, 0.95).
        var result = RlooAdvantages.Compute(Column(-5, 0.5, 5), [1.0], 3, [2, -1, 0.5], 0.1, (-1, 1), false);
        double[] penalised = [-1.2, 0.6, 0.95];
        for (var i = 0; i < 3; i++)
            Assert.Equal(penalised[i] - (penalised.Sum() - penalised[i]) / 2, result.Advantages[i], 12);
        // The logged reward is the plain weighted reward, neither clipped nor penalised.
        Assert.Equal(0.5 / 3, result.RewardMean, 12);
        // Equal rewards with different KLs: the group's penalised std is not 0.
        var equal = RlooAdvantages.Compute(Column(1, 1, 1, 1), [1.0], 2, [0, 0, 1, 3], 0.5, null, false);
        Assert.Equal(0.5, equal.FracRewardZeroStd);   // the first group only
        Assert.Equal([0, 0, 1, -1], equal.Advantages);   // (0.5 − (−0.5), −0.5 − 0.5)
        // β ≠ 0 without the KL values would silently drop the penalty: refused.
        Assert.Contains("KL", Assert.Throws<ArgumentException>(() => RlooAdvantages.Compute(Column(1, 2), [1.0], 2, null, 0.1, null, false)).Message);
    }

    [Fact]
    public void SequenceKlIsTheOldMinusReferenceSumAndTruncatedCompletionsDropOutWhenMasked()
    {
        GrpoRow[] rows =
        [
            new([1, 2], [5, 6, 7], false, 0, [-1f, -2f, -0.5f], [-1.5f, -1f, -0.5f]),   // 0.5 − 1 + 0 = −0.5
            new([1, 2], [8, 9], true, 0, [-3f, -1f], [-1f, -1.25f]),                    // −2 + 0.25 = −1.75
        ];
        var (perSequence, perToken) = RlooAdvantages.SequenceKl(rows, maskTruncated: false);
        Assert.Equal(-0.5, perSequence[0], 6);
        Assert.Equal(-1.75, perSequence[1], 6);
        Assert.Equal(-2.25 / 5, perToken, 6);
        var (masked, maskedPerToken) = RlooAdvantages.SequenceKl(rows, maskTruncated: true);
        Assert.Equal([-0.5, 0.0], masked.Select(v => Math.Round(v, 6)));
        Assert.Equal(-0.5 / 3, maskedPerToken, 6);
        // The masked truncated completion's reward keeps no KL but still stands in its siblings' baseline.
        var result = RlooAdvantages.Compute(Column(1, 0), [1.0], 2, masked, 1.0, null, false);
        Assert.Equal(1.5 - 0, result.Advantages[0], 6);
        Assert.Equal(0 - 1.5, result.Advantages[1], 6);
    }

    [Fact]
    public void TheLossIsTrlsSequenceRatioSurrogateInDoubles()
    {
        // B = 3, T = 4; row 2's last two positions are padding; ε = 0.2, ε_high = 0.28; 2 micro-batches in the step.
        double[,] lp = { { -1.0, -0.5, -2.0, -0.1 }, { -0.3, -0.2, -0.4, -0.9 }, { -1.2, -0.7, 0, 0 } };
        double[,] oldLp = { { -1.1, -0.6, -2.05, -0.1 }, { -0.2, -0.1, -0.3, -0.8 }, { -1.0, -0.8, 0, 0 } };
        double[,] m = { { 1, 1, 1, 1 }, { 1, 1, 1, 1 }, { 1, 1, 0, 0 } };
        double[] a = [1.5, -0.7, 0.4];
        const double eps = 0.2, epsHigh = 0.28;
        var logProbs = tensor(lp, dtype: ScalarType.Float32).requires_grad_();
        var result = RlooLoss.Compute(logProbs, tensor(oldLp, dtype: ScalarType.Float32), tensor(a.Select(v => (float)v).ToArray()),
            tensor(m, dtype: ScalarType.Float32), eps, epsHigh, 2);
        result.Loss.backward();

        double expected = 0;
        var grad = new double[3, 4];
        for (var b = 0; b < 3; b++)
        {
            double logps = 0, old = 0;
            for (var t = 0; t < 4; t++) { logps += lp[b, t] * m[b, t]; old += oldLp[b, t] * m[b, t]; }
            var r = Math.Exp(logps - old);
            var c = Math.Clamp(r, 1 - eps, 1 + epsHigh);
            expected += -Math.Min(r * a[b], c * a[b]) / 3 / 2;
            // d/dlogπ: −A·r through the unclipped branch when it is the minimum (or the clip is inactive), else 0.
            var g = r * a[b] <= c * a[b] || c == r ? -a[b] * r / 3 / 2 : 0;
            for (var t = 0; t < 4; t++) grad[b, t] = g * m[b, t];
        }
        Assert.Equal(expected, result.Loss.item<float>(), 5);
        var actual = logProbs.grad!.data<float>().ToArray();
        for (var i = 0; i < 12; i++) Assert.Equal(grad[i / 4, i % 4], actual[i], 5);
        // Row 0: r = e^0.25 > 1.28 with A > 0 → high-clipped; row 1: r = e^−0.4 < 0.8 with A < 0 → low-clipped; row 2 neither.
        Assert.Equal(1f, result.LowClippedSum.item<float>());
        Assert.Equal(1f, result.HighClippedSum.item<float>());
        Assert.Equal(2f, result.RegionClippedSum.item<float>());
        Assert.Equal(0f, result.LowClippedMin.item<float>());
        Assert.Equal(1f, result.HighClippedMax.item<float>());
        // The clipped rows get no gradient (through the implementation's own gradient); the unclipped row does.
        Assert.All(actual[..8], v => Assert.Equal(0f, v));
        Assert.All(actual[8..10], v => Assert.NotEqual(0f, v));
        Assert.All(actual[10..], v => Assert.Equal(0f, v));   // padding
    }

    [Fact]
    public void WithoutOldLogProbsTheRatioIsOneAndTheGradientThePlainPolicyGradient()
    {
        double[,] lp = { { -1.0, -0.5 }, { -0.3, -0.2 } };
        var logProbs = tensor(lp, dtype: ScalarType.Float32).requires_grad_();
        var result = RlooLoss.Compute(logProbs, null, tensor(new[] { 2f, -1f }), ones(2, 2), 0.2, 0.2, 1);
        result.Loss.backward();
        Assert.Equal(-(2 - 1) / 2.0, result.Loss.item<float>(), 6);
        Assert.Equal([-1f, -1f, 0.5f, 0.5f], logProbs.grad!.data<float>().ToArray());
    }

    [Fact]
    public void RlooTakesTrlsDefaultsAndRefusesWhatItWouldIgnore()
    {
        var options = new TrainingOptions { Objective = "rloo", MicroBatchSize = 4 };
        var settings = GrpoSettings.From(options);
        Assert.Equal(2, settings.NumGenerations);
        Assert.Equal(new RlooSettings(0.05, false, null), settings.Rloo);
        Assert.Equal(0, settings.Loss.Beta);   // the KL is in the reward, not the loss
        Assert.Equal(0.2, settings.Loss.Epsilon);
        Assert.True(settings.NeedsReference);
        Assert.False(GrpoSettings.From(options with { Beta = 0 }).NeedsReference);
        Assert.Equal(8, GrpoSettings.From(options with { Objective = "grpo", MicroBatchSize = 8 }).NumGenerations);
        Assert.Equal((-1.0, 2.0), GrpoSettings.From(options with { RewardClipRange = [-1, 2] }).Rloo!.RewardClipRange);

        Assert.Contains("loss_type", Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options with { LossType = "dapo" })).Message);
        Assert.Contains("scale_rewards", Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options with { ScaleRewards = "batch" })).Message);
        Assert.Contains("reward_clip_range", Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options with { RewardClipRange = [2, 1] })).Message);
        Assert.Contains("beta", Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(options with { Beta = -1 })).Message);
        foreach (var other in new[] { "grpo", "sft", "dpo" })
        {
            var grpo = options with { Objective = other, MicroBatchSize = 8 };
            Assert.Contains("normalize_advantages", Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(grpo with { NormalizeAdvantages = true })).Message);
            Assert.Contains("reward_clip_range", Assert.Throws<ArgumentException>(() => FineTuneJob.Validate(grpo with { RewardClipRange = [0, 1] })).Message);
        }
    }

    [Theory]
    [InlineData("sft")]
    [InlineData("dpo")]
    [InlineData("orpo")]
    [InlineData("simpo")]
    [InlineData("kto")]
    [InlineData("grpo")]
    [InlineData("rloo")]
    [InlineData("gkd")]
    public void ConfigFilesOfEarlierVersionsStillLoadUnderEveryObjective(string objective)
    {
        // Earlier versions wrote num_generations: 8 and scale_rewards: group into every run's config.yaml; resuming
        // such a run (train --config RUN/config.yaml --resume) must still validate, whatever its objective.
        using var dir = new SharpTune.Tests.Support.TempDir();
        var options = new TrainingOptions { Model = "m", Data = "d.jsonl", Objective = objective, MicroBatchSize = 8,
            Teacher = objective == "gkd" ? "t" : null };
        var yaml = TrainingConfigFile.ToYaml(options);
        Assert.Contains("num_generations: \n", yaml.Replace("\r", ""));   // written empty (unset) now
        string Old(string numGenerations, string scaleRewards) => yaml.Replace("\r", "")
            .Replace("num_generations: \n", $"num_generations: {numGenerations}\n").Replace("scale_rewards: \n", $"scale_rewards: {scaleRewards}\n");
        var old = TrainingConfigFile.Load(dir.File("config.yaml", Old("8", "group")));
        Assert.Equal(8, old.NumGenerations);
        Assert.Equal("group", old.ScaleRewards);
        FineTuneJob.Validate(old);
        if (objective is "grpo" or "rloo") Assert.Equal(8, GrpoSettings.From(old).NumGenerations);   // there it is a real setting

        // Any other value is a setting the objective would ignore: refused, naming it.
        if (objective is not ("grpo" or "rloo"))
            Assert.Contains("num_generations (--num-generations)", Assert.Throws<ArgumentException>(() =>
                FineTuneJob.Validate(TrainingConfigFile.Load(dir.File("g4.yaml", Old("4", "group"))))).Message);
        if (objective != "grpo")
            Assert.Contains("scale_rewards (--scale-rewards)", Assert.Throws<ArgumentException>(() =>
                FineTuneJob.Validate(TrainingConfigFile.Load(dir.File("batch.yaml", Old("8", "batch"))))).Message);
    }

    [Fact]
    public void MissingPromptsAndRewardsAreReportedForTheObjectiveRun()
    {
        var row = new SharpTune.Data.DataRow("data.jsonl", 3, System.Text.Json.Nodes.JsonNode.Parse("""{"text": "no prompt"}""")!.AsObject());
        var noPrompt = Assert.ThrowsAny<Exception>(() => SharpTune.Data.PromptExample.FromRow(row, "rloo")).Message;
        Assert.Contains("objective rloo needs a prompt", noPrompt);
        Assert.Contains("data.jsonl:3", noPrompt);
        Assert.Contains("objective grpo needs a prompt", Assert.ThrowsAny<Exception>(() => SharpTune.Data.PromptExample.FromRow(row)).Message);
        Assert.Contains("objective rloo needs at least one reward function", Assert.Throws<ArgumentException>(() =>
            SharpTune.Training.Rewards.RewardRegistry.Create(new TrainingOptions { Objective = "rloo" })).Message);
    }

    [Fact]
    public void StepMetricsAverageRloosClipIndicatorsOverSequencesPerMicroBatch()
    {
        // Two micro-batches of 2 sequences (10 and 4 loss tokens): the entropy is a token mean, the clip ratios sequence
        // means, each per micro-batch, then the plain mean over the micro-batches (TRL's RLOO log).
        GrpoTrainer.GrpoMetricSums[] parts =
        [
            new(10, 5, 0, 1, 0, 1, ClipUnits: 2, LowMin: 0, HighMax: 0),
            new(4, 2, 0, 0, 2, 2, ClipUnits: 2, LowMin: 0, HighMax: 1),
        ];
        var metrics = GrpoTrainer.StepMetrics(parts, withKl: false);
        Assert.Equal(0.5, metrics["entropy"], 12);
        Assert.Equal(0.25, metrics["clip_ratio/low_mean"], 12);
        Assert.Equal(0.5, metrics["clip_ratio/high_mean"], 12);
        Assert.Equal(0.75, metrics["clip_ratio/region_mean"], 12);
        Assert.Equal(0.0, metrics["clip_ratio/low_min"], 12);
        Assert.Equal(0.5, metrics["clip_ratio/high_max"], 12);
        Assert.False(metrics.ContainsKey("kl"));
    }

    [Fact]
    public void TheExampleConfigIsAValidRlooRun()
    {
        var example = TrainingConfigFile.Load(Path.Combine(SharpTune.Tests.Support.TestAssets.RepoRoot, "examples", "rloo.yaml"));
        FineTuneJob.Validate(example);
        var settings = GrpoSettings.From(example);
        Assert.Equal("RLOO", settings.Name);
        Assert.Equal(4, settings.NumGenerations);
        Assert.Equal(0.05, settings.Rloo!.Beta);
        Assert.Equal(["exact=0.5", "chrf=0.5"], example.Rewards!);
    }

    [Fact]
    public void OnTheModelTheGradientIsTheSequenceLevelPolicyGradient()
    {
        // μ = 1, β = 0: ratio 1, so RLOO's gradient is −1/(B·accumulation) · Σ_i A_i · Σ_t ∇log π(o_it | prefix) — no per-token
        // normalisation (unlike GRPO's), and a masked truncated completion contributes nothing. Checked against an
        // unbatched, unpadded forward pass with a hand-written log-softmax, on GRPO's gradient-test rows.
        var rows = GrpoGradientTests.Rows;
        using var model = SharpTune.Tests.Support.TestModels.Create("llama", seed: 7);
        model.eval();
        foreach (var chunk in rows.Chunk(2))
        {
            using var scope = NewDisposeScope();
            using var batch = GrpoBatch.Collate(chunk, model.Device, maskTruncated: true);
            var logProbs = TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out _);
            RlooLoss.Compute(logProbs, null, batch.Advantages, batch.Mask, 0.2, 0.2, 2).Loss.backward();
        }
        var rloo = GrpoGradientTests.Gradients(model);

        foreach (var row in rows.Where(r => !r.Truncated))
        {
            using var scope = NewDisposeScope();
            int[] sequence = [.. row.PromptIds, .. row.CompletionIds];
            var logits = model.Forward(tensor(sequence.Select(t => (long)t).ToArray()).unsqueeze(0)).squeeze(0).to(ScalarType.Float64);
            var logSoftmax = logits - logits.exp().sum(-1, keepdim: true).log();
            var sum = zeros(1, dtype: ScalarType.Float64).sum();
            for (var k = 0; k < row.CompletionIds.Length; k++) sum = sum + logSoftmax[row.PromptIds.Length + k - 1, row.CompletionIds[k]];
            (-(row.Advantage / (2.0 * 2)) * sum).backward();
        }
        var reinforce = GrpoGradientTests.Gradients(model);

        var largest = reinforce.Values.Max(g => g.Max(Math.Abs));
        Assert.True(largest > 1e-4, "the test needs a gradient that is not ~0");
        foreach (var (name, expected) in reinforce)
            for (var i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - rloo[name][i]) <= 2e-5 * largest + 1e-7, $"{name}[{i}]: policy gradient {expected[i]}, RLOO {rloo[name][i]}");
    }
}
