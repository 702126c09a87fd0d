using SharpTune.Evaluation;

namespace SharpTune.Training.Rewards;

/// <summary>
/// <c>exact</c>: 1 when the completion equals the row's reference answer after SQuAD normalisation (case, punctuation,
/// articles, spaces), else 0; not applicable to rows without the field.
/// </summary>
public sealed class ExactReward(string field = "answer") : PerSampleReward
{
    public override string Name => "exact";

    public override double? Score(RewardSample sample) =>
        Reference(sample, field) is { } answer ? (ExactMatch.Normalized(sample.Completion, answer) ? 1.0 : 0.0) : null;
}
