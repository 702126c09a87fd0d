using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

/// <summary>Regression, multi-label and reward-pair metrics on tiny cases worked by hand with scikit-learn's, SciPy's and TRL's definitions.</summary>
public class HeadMetricsTests
{
    [Fact]
    public void Regression_errors_correlations_and_r2_match_the_hand_worked_values()
    {
        // errors 0.5, 0, −0.5, 1: MSE (0.25 + 0 + 0.25 + 1) / 4 = 0.375, MAE 2 / 4 = 0.5; gold mean 2.5, SS_tot 5 → R² 1 − 1.5/5 = 0.7.
        // Pearson: Σdx·dy = 5.5, Σdx² = 5, Σdy² = 7.25 → 5.5 / √36.25 = 0.913500. Both sides increase together: Spearman 1.
        var m = RegressionMetrics.Compute([1, 2, 3, 4], [1.5, 2, 2.5, 5]);
        Assert.Equal(4, m.Count);
        Assert.Equal(0.375, m.Mse, 12);
        Assert.Equal(0.5, m.Mae, 12);
        Assert.Equal(Math.Sqrt(0.375), m.Rmse, 12);
        Assert.Equal(0.7, m.R2, 12);
        Assert.Equal(0.913500, m.Pearson, 6);
        Assert.Equal(1, m.Spearman, 12);
    }

    [Fact]
    public void Spearman_gives_ties_their_average_rank()
    {
        // scipy.stats.rankdata: [1, 2, 2, 3] → [1, 2.5, 2.5, 4]; [10, 20, 30, 30] → [1, 2, 3.5, 3.5].
        Assert.Equal([1, 2.5, 2.5, 4], Correlation.Ranks([1, 2, 2, 3]));
        Assert.Equal([1, 2, 3.5, 3.5], Correlation.Ranks([10, 20, 30, 30]));
        // Pearson of those ranks: Σdx·dy = 3.75, Σdx² = Σdy² = 4.5 → 0.833333 (with ranks 1..4 and no tie handling it would be 0.8).
        var m = RegressionMetrics.Compute([1, 2, 2, 3], [10, 20, 30, 30]);
        Assert.Equal(3.75 / 4.5, m.Spearman, 12);
    }

    [Fact]
    public void Constant_gold_values_give_sklearns_finite_r2_and_scipys_nan_correlation()
    {
        Assert.Equal(1, RegressionMetrics.Compute([2, 2], [2, 2]).R2);
        Assert.Equal(0, RegressionMetrics.Compute([2, 2], [1, 2]).R2);
        Assert.True(double.IsNaN(RegressionMetrics.Compute([2, 2], [1, 2]).Pearson));
        Assert.Throws<ArgumentException>(() => RegressionMetrics.Compute([1, 2], [1]));
    }

    [Fact]
    public void Multi_label_subset_accuracy_hamming_loss_and_micro_versus_macro_f1_match_sklearn_worked_by_hand()
    {
        // Labels a, b, c. Row 1 misses c, row 2 is exact, row 3 misses b and adds c.
        bool[][] gold = [[true, false, true], [false, true, false], [true, true, false]];
        bool[][] predicted = [[true, false, false], [false, true, false], [true, false, true]];
        var m = MultiLabelMetrics.Compute(gold, predicted, ["a", "b", "c"]);
        Assert.Equal(1 / 3.0, m.SubsetAccuracy, 12);   // accuracy_score: only row 2
        Assert.Equal(3 / 9.0, m.HammingLoss, 12);      // hamming_loss: 3 wrong decisions of 9
        // Per label: a TP 2 of 2 predicted and 2 gold → F1 1; b TP 1 of 1 predicted, 2 gold → P 1, R 0.5, F1 2/3; c TP 0 → 0.
        Assert.Equal(1, m.PerLabel[0].F1, 12);
        Assert.Equal(2 / 3.0, m.PerLabel[1].F1, 12);
        Assert.Equal(0, m.PerLabel[2].F1, 12);
        Assert.Equal([2, 2, 1], m.PerLabel.Select(l => l.Support));
        Assert.Equal(0.5, m.PerLabel[1].Recall, 12);
        // macro: (1 + 2/3 + 0) / 3 = 5/9; micro: TP 3, FP 1, FN 2 → 2·3 / (2·3 + 1 + 2) = 2/3; weighted (1·2 + 2/3·2 + 0·1) / 5 = 2/3.
        Assert.Equal(5 / 9.0, m.Macro.F1, 12);
        Assert.Equal(2 / 3.0, m.Micro.F1, 12);
        Assert.Equal(0.75, m.Micro.Precision, 12);
        Assert.Equal(0.6, m.Micro.Recall, 12);
        Assert.Equal(2 / 3.0, m.Weighted.F1, 12);
        Assert.Throws<ArgumentException>(() => MultiLabelMetrics.Compute([[true]], [[true, false]], ["a"]));
    }

    [Fact]
    public void Reward_accuracy_leaves_out_tied_pairs_as_trls_compute_accuracy_does()
    {
        // Pair 1 right, pair 2 tied, pair 3 wrong, pair 4 right.
        var m = RewardMetrics.Compute([2, 1, 0.5, 3], [1, 1, 1, 0]);
        Assert.Equal(4, m.Pairs);
        Assert.Equal(1, m.Ties);
        Assert.Equal(2 / 3.0, m.Accuracy, 12);          // compute_accuracy: the tie is filtered out
        Assert.Equal(0.5, m.StrictAccuracy, 12);        // compute_loss' (chosen > rejected).mean(): the tie counts as wrong
        Assert.Equal((1 + 0 - 0.5 + 3) / 4, m.MeanMargin, 12);
        Assert.Equal(6.5 / 4, m.MeanChosen, 12);
        Assert.Equal(0.75, m.MeanRejected, 12);
        Assert.True(double.IsNaN(RewardMetrics.Compute([1], [1]).Accuracy));
    }
}
