using SharpTune.Evaluation;

namespace SharpTune.Training.Rewards;

/// <summary><c>bleu</c>: sentence BLEU (sacreBLEU's, effective order) of the completion against the reference field, in [0, 1].</summary>
public sealed class BleuReward(string field = "answer") : PerSampleReward
{
    private readonly Bleu bleu = new(new BleuOptions { EffectiveOrder = true });

    public override string Name => "bleu";

    public override double? Score(RewardSample sample) =>
        Reference(sample, field) is { } reference ? bleu.SentenceScore(sample.Completion, [reference]).Score / 100 : null;
}
