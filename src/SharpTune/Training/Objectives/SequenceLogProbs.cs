using SharpTune.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training.Objectives;

/// <summary>The log-probability a model gives each row's supervised tokens, summed per row (DPO's sequence log-prob).</summary>
public static class SequenceLogProbs
{
    /// <summary>
    /// (B) sums of log p(target) over each row's supervised positions, in fp32. Logits are made in chunks of
    /// <paramref name="chunkTokens"/> positions, so the [tokens × vocab] matrix is never whole in memory.
    /// </summary>
    public static Tensor Compute(CausalLanguageModel model, TrainingBatch batch, int chunkTokens = 2048)
    {
        using var scope = NewDisposeScope();
        var hidden = model.DecodeHidden(model.EmbedTokens(batch.InputIds), batch.Context);   // (B, T', C)
        var targets = batch.Targets;                                                        // (B, T)
        if (hidden.shape[1] != targets.shape[1])   // virtual tokens prepended (prompt tuning): score only the real ones
            hidden = hidden.narrow(1, hidden.shape[1] - targets.shape[1], targets.shape[1]);
        var flatHidden = hidden.reshape(-1, hidden.shape[2]);
        var flatTargets = targets.reshape(-1);
        var total = flatTargets.shape[0];
        var parts = new List<Tensor>();
        for (long start = 0; start < total; start += chunkTokens)
        {
            var n = Math.Min(chunkTokens, total - start);
            var logits = model.ComputeLogits(flatHidden.narrow(0, start, n)).to(ScalarType.Float32);   // (n, V)
            // cross_entropy per position is −log p(target), and 0 where the target is ignored.
            parts.Add(-F.cross_entropy(logits, flatTargets.narrow(0, start, n), ignore_index: BatchCollator.IgnoreIndex,
                reduction: nn.Reduction.None));
        }
        return cat(parts, 0).reshape(targets.shape).sum(1).MoveToOuterDisposeScope();   // (B)
    }
}
