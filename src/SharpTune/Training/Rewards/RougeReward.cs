using SharpTune.Evaluation;

namespace SharpTune.Training.Rewards;

/// <summary><c>rouge</c>: ROUGE-L F-measure (rouge-score's) of the completion against the reference field, in [0, 1].</summary>
public sealed class RougeReward(string field = "answer", string type = "rougeL") : PerSampleReward
{
    private readonly Rouge rouge = new([type]);

    public override string Name => "rouge";

    public override double? Score(RewardSample sample) =>
        Reference(sample, field) is { } reference ? rouge.Score(reference, sample.Completion)[type].FMeasure : null;
}
