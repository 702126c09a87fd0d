using System.Globalization;
using System.Text;

namespace SharpTune.Evaluation;

/// <summary>One group's row: how many members, how many counted in the rate's denominator and numerator, and the rate.</summary>
/// <param name="Group">Group name.</param>
/// <param name="Members">Examples in the group.</param>
/// <param name="Eligible">Examples in the rate's denominator (all members, or the gold positives for TPR).</param>
/// <param name="Positives">Eligible examples predicted positive.</param>
/// <param name="Rate">Positives / Eligible; NaN when nothing is eligible.</param>
public sealed record GroupRate(string Group, int Members, int Eligible, int Positives, double Rate);

/// <summary>A between-group gap (max rate minus min rate over groups with a defined rate) and the per-group table.</summary>
public sealed record FairnessReport(string Metric, double Difference, IReadOnlyList<GroupRate> Groups)
{
    /// <summary>A plain-text table of the groups followed by the difference.</summary>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        int width = Math.Max(5, Groups.Max(g => g.Group.Length));
        var text = new StringBuilder();
        text.Append("group".PadRight(width)).Append("  members  eligible  positive      rate\n");
        foreach (var g in Groups)
            text.Append(g.Group.PadRight(width)).Append(g.Members.ToString(c).PadLeft(9)).Append(g.Eligible.ToString(c).PadLeft(10))
                .Append(g.Positives.ToString(c).PadLeft(10)).Append((double.IsNaN(g.Rate) ? "n/a" : g.Rate.ToString("F4", c)).PadLeft(10)).Append('\n');
        text.Append(c, $"{Metric} = {Difference:F4}\n");
        return text.ToString();
    }
}

/// <summary>
/// Group fairness gaps with fairlearn's "between groups" definitions: demographic parity difference is the spread of
/// positive-prediction rates P(ŷ = +), equal opportunity difference the spread of true-positive rates P(ŷ = + | y = +).
/// A group with no eligible example (for TPR: no gold positive) has an undefined rate, shown as NaN and left out of
/// the difference rather than counted as 0.
/// </summary>
public static class FairnessMetrics
{
    /// <summary>Max minus min over groups of the rate of <paramref name="positiveLabel"/> predictions.</summary>
    public static FairnessReport DemographicParityDifference<T>(IReadOnlyList<T> predictions, IReadOnlyList<string> groups, T positiveLabel)
        where T : notnull
    {
        ArgumentNullException.ThrowIfNull(predictions);
        Check(predictions.Count, groups, "predictions");
        return Report("demographic_parity_difference", predictions, groups, positiveLabel, _ => true);
    }

    /// <summary>Max minus min over groups of the true-positive rate (recall of <paramref name="positiveLabel"/>).</summary>
    public static FairnessReport EqualOpportunityDifference<T>(IReadOnlyList<T> predictions, IReadOnlyList<T> gold, IReadOnlyList<string> groups, T positiveLabel)
        where T : notnull
    {
        ArgumentNullException.ThrowIfNull(predictions);
        ArgumentNullException.ThrowIfNull(gold);
        Check(predictions.Count, groups, "predictions");
        if (gold.Count != predictions.Count)
            throw new ArgumentException($"There are {gold.Count} gold labels but {predictions.Count} predictions.", nameof(gold));
        var comparer = EqualityComparer<T>.Default;
        return Report("equal_opportunity_difference", predictions, groups, positiveLabel, i => comparer.Equals(gold[i], positiveLabel));
    }

    private static void Check(int count, IReadOnlyList<string> groups, string name)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (groups.Count != count) throw new ArgumentException($"There are {groups.Count} group labels but {count} {name}.", nameof(groups));
        if (count == 0) throw new ArgumentException("No examples to measure.", nameof(groups));
        int missing = groups.ToList().FindIndex(g => g is null);
        if (missing >= 0) throw new ArgumentException($"Group label {missing} is null.", nameof(groups));
    }

    private static FairnessReport Report<T>(string metric, IReadOnlyList<T> predictions, IReadOnlyList<string> groups, T positiveLabel, Func<int, bool> eligible)
        where T : notnull
    {
        var comparer = EqualityComparer<T>.Default;
        var rows = new List<GroupRate>();
        foreach (var group in groups.Distinct().Order(StringComparer.Ordinal))
        {
            int members = 0, eligibleCount = 0, positives = 0;
            for (int i = 0; i < groups.Count; i++)
            {
                if (groups[i] != group) continue;
                members++;
                if (!eligible(i)) continue;
                eligibleCount++;
                if (comparer.Equals(predictions[i], positiveLabel)) positives++;
            }
            rows.Add(new GroupRate(group, members, eligibleCount, positives, eligibleCount == 0 ? double.NaN : (double)positives / eligibleCount));
        }
        var defined = rows.Where(r => !double.IsNaN(r.Rate)).Select(r => r.Rate).ToList();
        double difference = defined.Count == 0 ? double.NaN : defined.Max() - defined.Min();
        return new FairnessReport(metric, difference, rows);
    }
}
