using System.Text.RegularExpressions;

namespace SharpTune.Training.Rewards;

/// <summary>
/// <c>regex</c>: 1 when the completion matches the pattern, else 0 — TRL's format rewards (e.g.
/// <c>^&lt;think&gt;.*?&lt;/think&gt;&lt;answer&gt;.*?&lt;/answer&gt;$</c>). The pattern is .NET syntax, matched with
/// <c>.</c> spanning lines; anchor it yourself to demand the whole completion.
/// </summary>
public sealed class RegexReward : PerSampleReward
{
    private readonly Regex regex;

    public RegexReward(string pattern)
    {
        try { regex = new Regex(pattern, RegexOptions.Singleline | RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)); }
        catch (ArgumentException e) { throw new ArgumentException($"reward_pattern '{pattern}' is not a valid regular expression: {e.Message}", e); }
    }

    public override string Name => "regex";

    public override double? Score(RewardSample sample) => regex.IsMatch(sample.Completion) ? 1.0 : 0.0;
}
