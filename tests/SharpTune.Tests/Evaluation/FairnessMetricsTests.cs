using SharpTune.Evaluation;

namespace SharpTune.Tests.Evaluation;

public class FairnessMetricsTests
{
    [Fact]
    public void DemographicParity_HandWorked()
    {
        // Group a: 3 of 4 predicted positive (0.75); group b: 1 of 4 (0.25) -> difference 0.5.
        string[] predictions = ["yes", "yes", "yes", "no", "yes", "no", "no", "no"];
        string[] groups = ["a", "a", "a", "a", "b", "b", "b", "b"];
        var report = FairnessMetrics.DemographicParityDifference(predictions, groups, "yes");
        Assert.Equal(0.5, report.Difference, 1e-12);
        Assert.Equal(0.75, report.Groups.Single(g => g.Group == "a").Rate, 1e-12);
        Assert.Equal(0.25, report.Groups.Single(g => g.Group == "b").Rate, 1e-12);
        Assert.Contains("demographic_parity_difference = 0.5000", report.ToString());
    }

    [Fact]
    public void EqualOpportunity_HandWorked()
    {
        // TPR over gold positives: group a has gold positives at 0, 1 (predicted 1, 0) -> 0.5; group b gold
        // positives at 4, 5, 6 (all predicted 1) -> 1.0; group c has no gold positive -> undefined, left out.
        int[] gold = [1, 1, 0, 0, 1, 1, 1, 0, 0];
        int[] predictions = [1, 0, 1, 1, 1, 1, 1, 0, 1];
        string[] groups = ["a", "a", "a", "a", "b", "b", "b", "c", "c"];
        var report = FairnessMetrics.EqualOpportunityDifference(predictions, gold, groups, 1);
        Assert.Equal(0.5, report.Difference, 1e-12);
        Assert.True(double.IsNaN(report.Groups.Single(g => g.Group == "c").Rate));
        Assert.Equal(2, report.Groups.Single(g => g.Group == "a").Eligible);
    }

    [Fact]
    public void MismatchedLengths_AreAClearError()
    {
        var error = Assert.Throws<ArgumentException>(() => FairnessMetrics.DemographicParityDifference([1, 0], ["a"], 1));
        Assert.Contains("1 group labels but 2 predictions", error.Message);
    }
}
