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
    public abstract Tensor LogProbs(CausalLanguageModel policy, PreferenceBatch batch);

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
    protected static Tensor ScoreFrozen(CausalLanguageModel model, TrainingBatch batch)
    {
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            return SequenceLogProbs.Compute(model, batch);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    private sealed class AdapterDisabledReference(IPeftAdapter adapter) : DpoReference
    {
        public override Tensor LogProbs(CausalLanguageModel policy, PreferenceBatch batch)
        {
            var wasEnabled = adapter.Enabled;
            adapter.Enabled = false;
            try { return ScoreFrozen(policy, batch); }
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

        public override Tensor LogProbs(CausalLanguageModel policy, PreferenceBatch batch) => ScoreFrozen(reference, batch);
    }

    private sealed class PolicyReference : DpoReference
    {
        public override Tensor LogProbs(CausalLanguageModel policy, PreferenceBatch batch) => ScoreFrozen(policy, batch);
    }

    private sealed class PrecomputedReference : DpoReference
    {
        public override Tensor LogProbs(CausalLanguageModel policy, PreferenceBatch batch) =>
            batch.ReferenceChosen is { } chosen && batch.ReferenceRejected is { } rejected
                ? cat([chosen, rejected], 0)
                : throw new InvalidOperationException(
                    "the batch carries no precomputed reference log-probs: run PreferenceReferenceCache.Precompute on every pair first");
    }
}
