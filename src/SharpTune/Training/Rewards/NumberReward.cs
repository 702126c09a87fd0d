using System.Globalization;
using System.Text.RegularExpressions;

namespace SharpTune.Training.Rewards;

/// <summary>
/// <c>number</c>: 1 when the last number in the completion equals the last number in the row's reference answer
/// (so "#### 42" and "The answer is 42." both give 42), comparing values — "3.50" = "3.5", "1,000" = "1000",
/// "1/2" = "0.5" — within a relative 1e-6; 0 when they differ or the completion has no number; not applicable
/// when the reference has none.
/// </summary>
public sealed partial class NumberReward(string field = "answer") : PerSampleReward
{
    public override string Name => "number";

    public override double? Score(RewardSample sample)
    {
        if (Reference(sample, field) is not { } answer || LastNumber(answer) is not { } expected) return null;
        if (LastNumber(sample.Completion) is not { } found) return 0.0;
        return Math.Abs(found - expected) <= 1e-6 * Math.Max(1.0, Math.Abs(expected)) ? 1.0 : 0.0;
    }

    /// <summary>The value of the last number written in <paramref name="text"/>, or null.</summary>
    public static double? LastNumber(string text)
    {
        var matches = Number().Matches(text);
        if (matches.Count == 0) return null;
        var m = matches[^1];
        var numerator = Parse(m.Groups["num"].Value);
        return m.Groups["den"].Success ? numerator / Parse(m.Groups["den"].Value) : numerator;
    }

    private static double Parse(string digits) => double.Parse(digits.Replace(",", ""), NumberStyles.Float, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"(?<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)(?:\s*/\s*(?<den>\d+(?:\.\d+)?))?")]
    private static partial Regex Number();
}
