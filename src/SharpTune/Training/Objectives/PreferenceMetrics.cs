using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// The output every pairwise preference objective (DPO, ORPO, SimPO) returns: TRL's rewards/chosen, rewards/rejected,
/// rewards/margins, logps/chosen and logps/rejected summed over the pairs, plus the count of pairs whose chosen reward
/// beats the rejected one (rewards/accuracies). Rows 0..P-1 are the chosen answers and P..2P-1 the rejected ones.
/// </summary>
internal static class PreferenceMetrics
{
    /// <summary>
    /// Builds the objective's output from <paramref name="lossSum"/> (kept with its gradient), the per-pair rewards and the
    /// (2P) log-probs the objective compares; <paramref name="extra"/> adds the objective's own metrics (e.g. nll_loss).
    /// </summary>
    public static ObjectiveOutput Output(Tensor lossSum, Tensor chosenRewards, Tensor rejectedRewards, Tensor logProbs, long pairs,
        IEnumerable<KeyValuePair<string, Tensor>>? extra = null)
    {
        using var noGrad = no_grad();
        var detached = logProbs.detach();
        var metrics = new Dictionary<string, Tensor>
        {
            ["rewards/chosen"] = chosenRewards.sum(),
            ["rewards/rejected"] = rejectedRewards.sum(),
            ["rewards/margins"] = (chosenRewards - rejectedRewards).sum(),
            ["logps/chosen"] = detached.narrow(0, 0, pairs).sum(),
            ["logps/rejected"] = detached.narrow(0, pairs, pairs).sum(),
        };
        foreach (var (name, value) in extra ?? []) metrics[name] = value;
        return new ObjectiveOutput(lossSum, chosenRewards.gt(rejectedRewards).sum(), metrics);
    }
}
