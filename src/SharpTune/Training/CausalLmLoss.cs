using SharpTune.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training;

/// <summary>Next-token cross-entropy, summed over supervised tokens (the caller divides by the step's token count).</summary>
public static class CausalLmLoss
{
    /// <summary>
    /// Sum of −log p(target) over supervised positions and the number of correctly predicted ones. Logits are made
    /// and reduced in sequence chunks, so the fp32 [tokens × vocab] matrix is never whole in memory at once.
    /// </summary>
    public static (Tensor LossSum, Tensor Correct) Compute(CausalLanguageModel model, TrainingBatch batch, Tensor? inputsEmbeds = null,
        int chunkTokens = 2048)
    {
        var hidden = model.DecodeHidden(inputsEmbeds ?? model.EmbedTokens(batch.InputIds), batch.Context);   // (B, T, C)
        var targets = batch.Targets;
        if (hidden.shape[1] != targets.shape[1])   // defensive: DecodeHidden already returns only the real tokens' states
            hidden = hidden.narrow(1, hidden.shape[1] - targets.shape[1], targets.shape[1]);
        var flatHidden = hidden.reshape(-1, hidden.shape[2]);
        var flatTargets = targets.reshape(-1);
        var total = (long)flatTargets.shape[0];
        Tensor? loss = null;
        Tensor? correct = null;
        for (long start = 0; start < total; start += chunkTokens)
        {
            var n = Math.Min(chunkTokens, total - start);
            var logits = model.ComputeLogits(flatHidden.narrow(0, start, n)).to(ScalarType.Float32);   // (n, V)
            var chunkTargets = flatTargets.narrow(0, start, n);
            var part = F.cross_entropy(logits, chunkTargets, ignore_index: BatchCollator.IgnoreIndex, reduction: nn.Reduction.Sum);
            using (no_grad())
            {
                var hits = logits.argmax(-1).eq(chunkTargets).logical_and(chunkTargets.ne(BatchCollator.IgnoreIndex)).sum();
                correct = correct is null ? hits : correct + hits;
            }
            loss = loss is null ? part : loss + part;
        }
        return (loss!, correct!);
    }
}
