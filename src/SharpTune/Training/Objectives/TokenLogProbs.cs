using SharpTune.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training.Objectives;

/// <summary>Per-position log-probabilities of given targets (GRPO's per-token log-probs, ORPO's full-sequence NLL).</summary>
public static class TokenLogProbs
{
    /// <summary>Positions whose logits are made at once unless a caller asks otherwise (GRPO's, RLOO's and online DPO's scoring).</summary>
    internal const int DefaultChunkTokens = 2048;

    /// <summary>
    /// (B, T) log p(target) at every position, 0 where the target is <see cref="BatchCollator.IgnoreIndex"/>, in fp32;
    /// with <paramref name="entropy"/> also the (B, T) entropy of each position's distribution (no gradient). Logits are
    /// made <paramref name="chunkTokens"/> positions at a time, so [tokens × vocab] is never whole in memory. With
    /// <paramref name="temperature"/> ≠ 1 the logits are divided by it first, as TRL's GRPO scores completions under the
    /// distribution they were sampled from.
    /// </summary>
    public static Tensor Compute(CausalLanguageModel model, Tensor inputIds, ForwardContext context, Tensor targets, out Tensor? entropy,
        bool withEntropy = false, int chunkTokens = DefaultChunkTokens, double temperature = 1.0)
    {
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be a positive number");
        using var scope = NewDisposeScope();
        var hidden = model.DecodeHidden(model.EmbedTokens(inputIds), context);   // (B, T', C)
        if (hidden.shape[1] != targets.shape[1])   // virtual tokens prepended (prompt tuning): score only the real ones
            hidden = hidden.narrow(1, hidden.shape[1] - targets.shape[1], targets.shape[1]);
        var flatHidden = hidden.reshape(-1, hidden.shape[2]);
        var flatTargets = targets.reshape(-1);
        var total = flatTargets.shape[0];
        var parts = new List<Tensor>();
        var entropies = new List<Tensor>();
        for (long start = 0; start < total; start += chunkTokens)
        {
            // Each chunk's own scope: its compute-dtype logits and their fp32 copy are released as soon as the chunk is
            // scored (the log-softmax's backward keeps only its output), so chunks' logits never pile up until the call returns.
            using var chunkScope = NewDisposeScope();
            var n = Math.Min(chunkTokens, total - start);
            var logits = model.ComputeLogits(flatHidden.narrow(0, start, n)).to(ScalarType.Float32);   // (n, V)
            if (temperature != 1.0) logits = logits / temperature;
            parts.Add((-F.cross_entropy(logits, flatTargets.narrow(0, start, n), ignore_index: BatchCollator.IgnoreIndex,
                reduction: nn.Reduction.None)).MoveToOuterDisposeScope());
            if (withEntropy)
            {
                using var noGrad = no_grad();
                var logp = logits.detach().log_softmax(-1);
                entropies.Add((-(logp.exp() * logp).sum(-1)).MoveToOuterDisposeScope());
            }
        }
        entropy = withEntropy ? cat(entropies, 0).reshape(targets.shape).MoveToOuterDisposeScope() : null;
        return cat(parts, 0).reshape(targets.shape).MoveToOuterDisposeScope();
    }

    /// <summary>(B, T) next-token targets over every real token of right-padded rows whose last target is the last supervised one.</summary>
    public static Tensor FullSequenceTargets(Tensor inputIds, Tensor completionTargets)
    {
        using var scope = NewDisposeScope();
        var supervised = completionTargets.ne(BatchCollator.IgnoreIndex).to(ScalarType.Int64);
        var upToLast = supervised.flip(1).cumsum(1).flip(1).gt(0);   // positions at or before each row's last target
        var next = inputIds.roll(-1, 1);
        return where(upToLast, next, full_like(next, BatchCollator.IgnoreIndex)).MoveToOuterDisposeScope();
    }
}
