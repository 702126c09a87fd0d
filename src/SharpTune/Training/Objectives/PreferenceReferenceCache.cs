using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// Precomputed reference log-probs (TRL's <c>precompute_ref_log_probs</c>): the reference model scores every pair once
/// before training and the values travel with the pairs, so training needs no reference forward passes — and, for
/// full fine-tuning, no second copy of the model, provided this runs before the first update.
/// </summary>
public static class PreferenceReferenceCache
{
    /// <summary>Returns the pairs with <see cref="TokenizedPreferencePair.ReferenceChosenLogProb"/> and its rejected twin filled in.</summary>
    public static IReadOnlyList<TokenizedPreferencePair> Precompute(IReadOnlyList<TokenizedPreferencePair> pairs, CausalLanguageModel policy,
        DpoReference reference, int batchSize, CancellationToken cancellationToken = default)
    {
        var result = new List<TokenizedPreferencePair>(pairs.Count);
        foreach (var chunk in pairs.Chunk(Math.Max(1, batchSize)))
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            using var batch = PreferenceCollator.Collate(chunk, policy.Device);
            var logProbs = reference.LogProbs(policy, batch).to(ScalarType.Float32).cpu().data<float>().ToArray();
            for (var i = 0; i < chunk.Length; i++)
                result.Add(chunk[i] with { ReferenceChosenLogProb = logProbs[i], ReferenceRejectedLogProb = logProbs[chunk.Length + i] });
        }
        return result;
    }
}
