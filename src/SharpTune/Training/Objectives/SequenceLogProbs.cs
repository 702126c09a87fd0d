using SharpTune.Models;
using static TorchSharp.torch;

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
        var perToken = TokenLogProbs.Compute(model, batch.InputIds, batch.Context, batch.Targets, out _, chunkTokens: chunkTokens);   // (B, T)
        return perToken.sum(1).MoveToOuterDisposeScope();   // (B)
    }
}
