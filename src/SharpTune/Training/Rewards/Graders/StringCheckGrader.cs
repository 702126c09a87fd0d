namespace SharpTune.Training.Rewards.Graders;

/// <summary>
/// OpenAI's <c>string_check</c> grader: 1 or 0 from comparing the rendered <c>input</c> with the rendered <c>reference</c>
/// by <c>operation</c> — eq, ne, like (reference contained in input, case-sensitive) or ilike (the same, ignoring case).
/// </summary>
public sealed class StringCheckGrader(string name, string input, string reference, string operation) : PerSampleReward
{
    public static IReadOnlyList<string> Operations { get; } = ["eq", "ne", "like", "ilike"];

    public override string Name => name;

    public override double? Score(RewardSample sample)
    {
        var value = GraderTemplate.Render(input, sample);
        var expected = GraderTemplate.Render(reference, sample);
        var pass = operation switch
        {
            "eq" => value == expected,
            "ne" => value != expected,
            "like" => value.Contains(expected, StringComparison.Ordinal),
            "ilike" => value.Contains(expected, StringComparison.OrdinalIgnoreCase),
            _ => throw new InvalidOperationException($"unknown string_check operation '{operation}'"),
        };
        return pass ? 1.0 : 0.0;
    }
}
