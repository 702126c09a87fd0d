using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// GRPO's four normalisations and its advantages against values worked by hand (plain arithmetic, in the comments) on a
/// tiny batch with known log-probs: 2 completions, 3 positions, the second one 2 tokens long.
/// </summary>
public class GrpoLossTests
{
    private static readonly float[,] LogProbs = { { -1.0f, -2.0f, -0.5f }, { -0.3f, -1.2f, 0f } };
    // Ratios exp(logp − old): row 0 [e^0.1 = 1.105171, 1, e^−0.3 = 0.740818]; row 1 [1, 0.7, –].
    private static readonly float[,] Old = { { -1.1f, -2.0f, -0.2f }, { -0.3f, (float)(-1.2 - Math.Log(0.7)), 0f } };
    private static readonly float[,] Reference = { { -0.8f, -2.5f, -0.5f }, { -0.1f, -1.0f, 0f } };
    private static readonly float[,] Mask = { { 1, 1, 1 }, { 1, 1, 0 } };
    private static readonly float[] Advantages = [1.0f, -0.5f];

    // Per-token −min(r·A, clip(r, 0.8, 1.2)·A):
    //   row 0 (A = 1):    −1.105171, −1, −0.740818 (r < 0.8 but A > 0: min keeps r)      → sum −2.845989
    //   row 1 (A = −0.5): −min(−0.5, −0.5) = 0.5; −min(−0.35, −0.4) = 0.4 (clipped)       → sum 0.9
    [Theory]
    [InlineData(GrpoLossType.Grpo, 1, 0, -0.249331523)]      // (−2.845989/3 + 0.9/2) / 2
    [InlineData(GrpoLossType.Grpo, 2, 0, -0.124665762)]      // … / gradient_accumulation 2
    [InlineData(GrpoLossType.Bnpo, 1, 0, -0.389197828)]      // (−2.845989 + 0.9) / 5 tokens
    [InlineData(GrpoLossType.DrGrpo, 1, 0, -0.243248642)]    // (−2.845989 + 0.9) / (2 rows × max_completion_length 4)
    [InlineData(GrpoLossType.Dapo, 1, 10, -0.194598914)]     // (−2.845989 + 0.9) / 10 tokens in the generation batch
    [InlineData(GrpoLossType.Dapo, 4, 10, -0.194598914)]     // DAPO does not divide by the accumulation steps
    public void EachNormalisationMatchesTheHandWorkedValue(GrpoLossType type, int accumulation, double batchTokens, double expected)
    {
        using var scope = NewDisposeScope();
        var result = GrpoLoss.Compute(tensor(LogProbs), tensor(Old), null, tensor(Advantages), tensor(Mask),
            new GrpoLossSettings(type, 0.2, null, 0, MaxCompletionLength: 4), accumulation, batchTokens);
        Assert.Equal(expected, result.Loss.item<float>(), 5);
        // Only row 1's second token is clipped (r = 0.7 < 0.8 with A < 0): 1 of the 5 loss tokens.
        Assert.Equal(1, result.LowClippedSum.item<float>());
        Assert.Equal(0, result.HighClippedSum.item<float>());
        Assert.Equal(1, result.RegionClippedSum.item<float>());
        Assert.Equal(5, result.TokenCount.item<float>());
    }

    [Fact]
    public void TheKlPenaltyAddsBetaTimesTheK3Estimator()
    {
        using var scope = NewDisposeScope();
        // k3 = e^(ref−logp) − (ref−logp) − 1 per token: 0.021403, 0.106531, 0 | 0.018731, 0.021403 → mean 0.034148.
        // With β = 0.04 the row sums become −2.840872 and 0.901712: grpo = (−2.840872/3 + 0.901712/2) / 2.
        var result = GrpoLoss.Compute(tensor(LogProbs), tensor(Old), tensor(Reference), tensor(Advantages), tensor(Mask),
            new GrpoLossSettings(GrpoLossType.Grpo, 0.2, null, 0.04, 4), 1, 0);
        Assert.Equal(-0.248050579, result.Loss.item<float>(), 5);
        Assert.Equal(0.034147787, result.KlSum.item<float>() / result.TokenCount.item<float>(), 5);
    }

    [Fact]
    public void ClipHigherWidensOnlyTheUpperBound()
    {
        using var scope = NewDisposeScope();
        // r = 1.3 with A = 1: clipped to 1.2 with ε_high = ε = 0.2 (loss −1.2, high-clipped), to 1.28 with ε_high = 0.28.
        var logp = tensor(new float[,] { { (float)Math.Log(1.3) } });
        var old = zeros(1, 1);
        var symmetric = GrpoLoss.Compute(logp, old, null, tensor(new[] { 1f }), ones(1, 1), new GrpoLossSettings(GrpoLossType.Bnpo), 1, 0);
        var higher = GrpoLoss.Compute(logp, old, null, tensor(new[] { 1f }), ones(1, 1), new GrpoLossSettings(GrpoLossType.Bnpo, 0.2, 0.28), 1, 0);
        Assert.Equal(-1.2, symmetric.Loss.item<float>(), 5);
        Assert.Equal(-1.28, higher.Loss.item<float>(), 5);
        Assert.Equal(1, symmetric.HighClippedSum.item<float>());
    }

    [Fact]
    public void WithoutOldLogProbsTheRatioIsOneAndTheGradientIsMinusTheAdvantage()
    {
        using var scope = NewDisposeScope();
        // μ = 1: old = logp.detach(), so r = 1 and ∂loss/∂logp = −A·mask/(len·B) for grpo.
        var logp = tensor(LogProbs).requires_grad_();
        var loss = GrpoLoss.Compute(logp, null, null, tensor(Advantages), tensor(Mask), new GrpoLossSettings(GrpoLossType.Grpo), 1, 0).Loss;
        Assert.Equal((-1.0 + 0.5) / 2, loss.item<float>(), 5);   // each row's token mean is −A: (−1 + 0.5) / 2
        loss.backward();
        var grad = logp.grad!.data<float>().ToArray();
        float[] expected = [-1f / 6, -1f / 6, -1f / 6, 0.5f / 4, 0.5f / 4, 0];
        for (var i = 0; i < 6; i++) Assert.Equal(expected[i], grad[i], 5);
    }

    [Fact]
    public void GroupAdvantagesAreCentredAndScaledByTheUnbiasedStd()
    {
        // Group 1 rewards [1, 0, 0]: mean 1/3, std √(1/3) = 0.577350 → (1 − 1/3)/(0.577350 + 1e-4) = 1.154501, −0.577250.
        // Group 2 rewards [1, 1, 1]: std 0 → advantages 0, and half the completions sit in a zero-std group.
        var scores = new double[,] { { 1 }, { 0 }, { 0 }, { 1 }, { 1 }, { 1 } };
        var group = GrpoAdvantages.Compute(scores, [1.0], 3, RewardScaling.Group);
        Assert.Equal([1.154500573, -0.577250287, -0.577250287, 0, 0, 0], group.Advantages.Select(a => Math.Round(a, 9)));
        Assert.Equal(0.5, group.FracRewardZeroStd);
        Assert.Equal(4.0 / 6, group.RewardMean, 12);
        // Batch std of [1,0,0,1,1,1] = 0.516398: (1 − 1/3)/(0.516398 + 1e-4) = 1.290744.
        var batch = GrpoAdvantages.Compute(scores, [1.0], 3, RewardScaling.Batch);
        Assert.Equal(1.290744497, batch.Advantages[0], 8);
        Assert.Equal(-0.645372249, batch.Advantages[1], 8);
        Assert.Equal(0, batch.FracRewardZeroStd);
        var none = GrpoAdvantages.Compute(scores, [1.0], 3, RewardScaling.None);
        Assert.Equal(2.0 / 3, none.Advantages[0], 12);
    }

    [Fact]
    public void WeightedRewardsSkipFunctionsThatDoNotApply()
    {
        // Weights 2 and 0.5; the first completion has no score from function 2 (TRL's None → nansum skips it):
        // rewards [2, 0.25 | 0.5, 2.25], each group ±1.237437 around its mean → ±0.707050.
        var scores = new double[,] { { 1, double.NaN }, { 0, 0.5 }, { 0, 1 }, { 1, 0.5 } };
        var result = GrpoAdvantages.Compute(scores, [2.0, 0.5], 2, RewardScaling.Group);
        Assert.Equal([2, 0.25, 0.5, 2.25], result.Rewards);
        Assert.Equal([0.707049643, -0.707049643, -0.707049643, 0.707049643], result.Advantages.Select(a => Math.Round(a, 9)));
        // A completion no function scores is left out of the baseline and gets advantage 0.
        var unscored = GrpoAdvantages.Compute(new double[,] { { double.NaN }, { 1 }, { 0 } , { 1 } }, [1.0], 2, RewardScaling.Group);
        Assert.True(double.IsNaN(unscored.Rewards[0]));
        Assert.Equal(0, unscored.Advantages[0]);
        Assert.Equal(0, unscored.Advantages[1]);
    }

    [Theory]
    [InlineData("grpo", GrpoLossType.Grpo)]
    [InlineData("dr_grpo", GrpoLossType.DrGrpo)]
    [InlineData("DAPO", GrpoLossType.Dapo)]
    [InlineData("bnpo", GrpoLossType.Bnpo)]
    public void LossTypesParseByTrlName(string name, GrpoLossType expected) => Assert.Equal(expected, GrpoLossSettings.ParseType(name));

    [Fact]
    public void AnUnknownLossTypeNamesTheChoices() =>
        Assert.Contains("dr_grpo", Assert.Throws<ArgumentException>(() => GrpoLossSettings.ParseType("ppo")).Message);

    [Fact]
    public void StepMetricsAverageEachMicroBatchsTokenMeanAsTrlLogsThem()
    {
        // TRL (trl/trainer/grpo_trainer.py@f2cd57710ae3) appends global_masked_mean(x) = Σ x·mask / max(1, Σ mask) once per
        // _compute_loss call, and log() averages those values: micro-batches of 2 and 6 loss tokens with entropy sums 1 and
        // 12 give (0.5 + 2) / 2 = 1.25 (a token-weighted mean would give 13 / 8 = 1.625). A micro-batch with no loss tokens
        // (all completions truncated and masked) contributes 0.
        GrpoTrainer.GrpoMetricSums[] parts =
        [
            new(Tokens: 2, Entropy: 1, Kl: 0.2, LowClipped: 1, HighClipped: 0, RegionClipped: 1),
            new(Tokens: 6, Entropy: 12, Kl: 0.6, LowClipped: 0, HighClipped: 3, RegionClipped: 3),
        ];
        var metrics = GrpoTrainer.StepMetrics(parts, withKl: true);
        Assert.Equal(1.25, metrics["entropy"], 12);
        Assert.Equal((0.1 + 0.1) / 2, metrics["kl"], 12);
        Assert.Equal((0.5 + 0) / 2, metrics["clip_ratio/low_mean"], 12);
        Assert.Equal((0 + 0.5) / 2, metrics["clip_ratio/high_mean"], 12);
        Assert.Equal((0.5 + 0.5) / 2, metrics["clip_ratio/region_mean"], 12);
        var withEmpty = GrpoTrainer.StepMetrics([.. parts, new(0, 0, 0, 0, 0, 0)], withKl: false);
        Assert.Equal(2.5 / 3, withEmpty["entropy"], 12);
        Assert.False(withEmpty.ContainsKey("kl"));
    }
}
