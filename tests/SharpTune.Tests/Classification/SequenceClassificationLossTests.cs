using SharpTune.Models;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Classification;

public class SequenceClassificationLossTests
{
    [Fact]
    public void Cross_entropy_matches_log_sum_exp_worked_by_hand()
    {
        // Row 1: ln(e¹ + e² + e⁰) − 2 = 0.407606; row 2: ln(2e^0.5 + e³) − 3 = 0.152008; mean 0.279807.
        using var logits = tensor(new float[] { 1, 2, 0, 0.5f, 0.5f, 3 }, [2, 3]);
        using var labels = tensor(new long[] { 1, 2 });
        using var loss = SequenceClassificationLoss.Compute(logits, labels, SequenceClassificationConfig.SingleLabelClassification);
        Assert.Equal(0.279807, loss.item<float>(), 5);
    }

    [Fact]
    public void Multi_label_loss_is_the_mean_binary_cross_entropy_worked_by_hand()
    {
        // BCEWithLogitsLoss: the mean over all 4 entries of −[y·lnσ(x) + (1 − y)·lnσ(−x)], with lnσ(x) = −ln(1 + e^−x):
        // (y=1, x=2) ln(1 + e^−2) = 0.126928; (y=0, x=−1) ln(1 + e^−1) = 0.313262; (y=1, x=0) ln 2 = 0.693147;
        // (y=1, x=3) ln(1 + e^−3) = 0.048587; mean 0.295481.
        using var logits = tensor(new float[] { 2, -1, 0, 3 }, [2, 2]);
        using var labels = tensor(new float[] { 1, 0, 1, 1 }, [2, 2]);
        using var loss = SequenceClassificationLoss.Compute(logits, labels, SequenceClassificationConfig.MultiLabelClassification);
        Assert.Equal(0.295481, loss.item<float>(), 5);
    }

    [Fact]
    public void Regression_is_the_mean_squared_error()
    {
        // ((0.5 − 1)² + (2 − 0)²) / 2 = 2.125
        using var logits = tensor(new float[] { 0.5f, 2 }, [2, 1]);
        using var targets = tensor(new float[] { 1, 0 });
        using var loss = SequenceClassificationLoss.Compute(logits, targets, SequenceClassificationConfig.Regression);
        Assert.Equal(2.125, loss.item<float>(), 6);
    }

    [Fact]
    public void Reward_loss_with_margin_and_centring_matches_the_formula_worked_by_hand()
    {
        using var chosen = tensor(new float[] { 1, 0 });
        using var rejected = tensor(new float[] { 0, 1 });
        using var margin = tensor(new float[] { 0.5f, 0 });
        // −logσ(1 − 0 − 0.5) = ln(1 + e^−0.5) = 0.474077; −logσ(0 − 1) = ln(1 + e) = 1.313262; mean 0.893669.
        using var plainMargin = RewardModelLoss.Compute(chosen, rejected, margin, null);
        Assert.Equal(0.893669, plainMargin.item<float>(), 5);
        // + 0.01 · mean((1 + 0)², (0 + 1)²) = + 0.01
        using var centred = RewardModelLoss.Compute(chosen, rejected, margin, 0.01);
        Assert.Equal(0.903669, centred.item<float>(), 5);
        // Without a margin: (ln(1 + e^−1) + ln(1 + e)) / 2 = 0.813262.
        using var noMargin = RewardModelLoss.Compute(chosen, rejected, null, null);
        Assert.Equal(0.813262, noMargin.item<float>(), 5);
        Assert.Equal(0.5, RewardModelLoss.Accuracy(chosen, rejected));
    }

    [Fact]
    public void Problem_type_is_inferred_as_transformers_does()
    {
        Assert.Equal(SequenceClassificationConfig.Regression, new SequenceClassificationConfig(["LABEL_0"], null, 0).EffectiveProblemType);
        Assert.Equal(SequenceClassificationConfig.SingleLabelClassification, new SequenceClassificationConfig(["a", "b"], null, 0).EffectiveProblemType);
        Assert.Throws<NotSupportedException>(() => SequenceClassificationLoss.Compute(zeros(1, 2), zeros(1, 2), "token_classification"));
    }
}
