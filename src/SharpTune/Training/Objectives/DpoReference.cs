using SharpTune.Models;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// Where DPO's reference log-probs come from. Each computes them without gradients and with dropout off, so the
/// reference is deterministic and precomputed values equal on-the-fly ones.
/// </summary>
public abstract class DpoReference
{
    /// <summary>(2P) summed completion log-probs of the batch's rows under the reference model.</summary>
    public virtual Tensor LogProbs(CausalLanguageModel policy, PreferenceBatch batch) => Score(policy, m => SequenceLogProbs.Compute(m, batch));

    /// <summary>
    /// Runs <paramref name="score"/> on the reference model, in eval mode and without gradients (KTO's and GRPO's
    /// reference passes use it with their own scoring).
    /// </summary>
    public abstract T Score<T>(CausalLanguageModel policy, Func<CausalLanguageModel, T> score);

    /// <summary>
    /// The policy itself with the adapter switched off: exactly the base model, with no second copy in memory.
    /// Works for every method implementing <see cref="IPeftAdapter.Enabled"/>.
    /// </summary>
    public static DpoReference AdapterDisabled(IPeftAdapter adapter) => new AdapterDisabledReference(adapter);

    /// <summary>A separate frozen model (full fine-tuning without precomputation: twice the weights in memory).</summary>
    public static DpoReference FrozenModel(CausalLanguageModel reference) => new FrozenModelReference(reference);

    /// <summary>
    /// The policy as it is now, frozen for the call: the reference only before the first update, so use it only to
    /// precompute (full fine-tuning with <c>precompute_ref_log_probs</c>, no second copy).
    /// </summary>
    public static DpoReference PolicyBeforeTraining { get; } = new PolicyReference();

    /// <summary>Values carried by the batch from <see cref="PreferenceReferenceCache.Precompute"/>: no reference forward at all.</summary>
    public static DpoReference Precomputed { get; } = new PrecomputedReference();

    /// <summary>Runs <paramref name="model"/> in eval mode without gradients, restoring its previous mode.</summary>
    protected static T ScoreFrozen<T>(CausalLanguageModel model, Func<CausalLanguageModel, T> score)
    {
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            return score(model);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    private sealed class AdapterDisabledReference(IPeftAdapter adapter) : DpoReference
    {
        public override T Score<T>(CausalLanguageModel policy, Func<CausalLanguageModel, T> score)
        {
            var wasEnabled = adapter.Enabled;
            adapter.Enabled = false;
            try { return ScoreFrozen(policy, score); }
            finally { adapter.Enabled = wasEnabled; }
        }
    }

    private sealed class FrozenModelReference : DpoReference
    {
        private readonly CausalLanguageModel reference;

        public FrozenModelReference(CausalLanguageModel reference)
        {
            this.reference = reference;
            foreach (var p in reference.parameters()) p.requires_grad = false;
            reference.eval();
        }

        public override T Score<T>(CausalLanguageModel policy, Func<CausalLanguageModel, T> score) => ScoreFrozen(reference, score);
    }

    private sealed class PolicyReference : DpoReference
    {
        public override T Score<T>(CausalLanguageModel policy, Func<CausalLanguageModel, T> score) => ScoreFrozen(policy, score);
    }

    private sealed class PrecomputedReference : DpoReference
    {
        public override T Score<T>(CausalLanguageModel policy, Func<CausalLanguageModel, T> score) =>
            throw new InvalidOperationException("precomputed reference log-probs cover only the pairs they were computed for");

        public override Tensor LogProbs(CausalLanguageModel policy, PreferenceBatch batch) =>
            batch.ReferenceChosen is { } chosen && batch.ReferenceRejected is { } rejected
                ? cat([chosen, rejected], 0)
                : throw new InvalidOperationException(
                    "the batch carries no precomputed reference log-probs: run PreferenceReferenceCache.Precompute on every pair first");
    }
}
