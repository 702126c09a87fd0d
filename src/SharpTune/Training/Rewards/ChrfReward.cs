using SharpTune.Evaluation;

namespace SharpTune.Training.Rewards;

/// <summary><c>chrf</c>: sentence chrF (sacreBLEU's) of the completion against the reference field, in [0, 1].</summary>
public sealed class ChrfReward(string field = "answer") : PerSampleReward
{
    private readonly Chrf chrf = new();

    public override string Name => "chrf";

    public override double? Score(RewardSample sample) =>
        Reference(sample, field) is { } reference ? chrf.SentenceScore(sample.Completion, [reference]).Score / 100 : null;
}
