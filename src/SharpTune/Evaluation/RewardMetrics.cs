namespace SharpTune.Evaluation;

/// <summary>
/// How a reward model ranks held-out preference pairs. <see cref="Accuracy"/> is TRL RewardTrainer's compute_accuracy
/// (trl/trainer/utils.py, huggingface/trl@bfd25d1d915c0bd05d456528a98eb0a6d19f47fd, the default compute_metrics of
/// RewardTrainer up to huggingface/trl@ebb8899f5da90c661edc294104a9b6972ca5836c): pairs whose two rewards are equal are
/// left out ("ignored in the accuracy computation"), and of the rest the fraction whose chosen reward is the higher; NaN
/// when every pair ties. <see cref="StrictAccuracy"/> is the accuracy RewardTrainer.compute_loss logs today
/// (huggingface/trl@f2cd57710ae345ea6428ae95363267fcf38a3dc8: (chosen &gt; rejected).mean(), a tie counting as wrong), which
/// training logs too. <see cref="MeanMargin"/> is the mean of chosen − rejected (its "margin").
/// </summary>
public sealed record RewardMetrics(int Pairs, int Ties, double Accuracy, double StrictAccuracy, double MeanMargin, double MeanChosen, double MeanRejected)
{
    /// <summary>Computes the metrics; <paramref name="chosen"/> and <paramref name="rejected"/> are paired by index.</summary>
    public static RewardMetrics Compute(IReadOnlyList<double> chosen, IReadOnlyList<double> rejected)
    {
        ArgumentNullException.ThrowIfNull(chosen);
        ArgumentNullException.ThrowIfNull(rejected);
        if (chosen.Count != rejected.Count)
            throw new ArgumentException($"There are {chosen.Count} chosen rewards but {rejected.Count} rejected ones.", nameof(rejected));
        if (chosen.Count == 0) throw new ArgumentException("no pairs to score", nameof(chosen));
        int ties = 0, above = 0;
        for (var i = 0; i < chosen.Count; i++)
        {
            if (chosen[i] == rejected[i]) ties++;
            else if (chosen[i] > rejected[i]) above++;
        }
        var pairs = chosen.Count;
        var decided = pairs - ties;
        return new RewardMetrics(pairs, ties, decided == 0 ? double.NaN : (double)above / decided, (double)above / pairs,
            chosen.Zip(rejected, (c, r) => c - r).Average(), chosen.Average(), rejected.Average());
    }
}
