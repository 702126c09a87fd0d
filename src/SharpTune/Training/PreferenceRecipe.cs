using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// DPO within <see cref="FineTuneJob"/>: preference pairs, a reference model chosen to cost as little memory as the
/// method allows, and the DPO objective on the common trainer.
/// <list type="bullet">
/// <item>adapter methods: the policy with its adapter switched off (no second copy);</item>
/// <item>full fine-tuning with <c>precompute_ref_log_probs</c>: the model scores every pair before its first update;</item>
/// <item>full fine-tuning otherwise: a second, frozen copy of the base model (twice the weights in memory).</item>
/// </list>
/// </summary>
internal static class DpoRecipe
{
    public static FineTuneResult Run(RecipeContext context, DpoSettings settings, IPeftAdapter? adapter, string modelDir, ScalarType dtype,
        PreferenceTokenizer tokenizer, IReadOnlyList<TrainingExample> train, IReadOnlyList<TrainingExample> validation,
        IReadOnlyList<TrainingExample> test, ParameterSummary parameters)
    {
        var options = context.Options;
        using var frozenCopy = adapter is null && !options.PrecomputeRefLogProbs
            ? AddedTokensSetup.LoadFrozenCopy(modelDir, dtype, context.Model, context.Options)
            : null;
        var scorer = adapter is not null ? DpoReference.AdapterDisabled(adapter)
            : frozenCopy is not null ? DpoReference.FrozenModel(frozenCopy)
            : DpoReference.PolicyBeforeTraining;
        context.Log?.Invoke("DPO reference: " + (adapter is not null ? "the base model (adapter disabled)"
            : frozenCopy is not null ? "a frozen copy of the base model" : "the base model, scored once before training")
            + (options.PrecomputeRefLogProbs ? ", precomputed" : ""));
        var objective = new DpoObjective(settings, options.PrecomputeRefLogProbs ? DpoReference.Precomputed : scorer);
        var trainer = new Trainer(context.Model, context.Trainable, options, context.SaveModel, objective);
        Func<IReadOnlyList<TokenizedPreferencePair>, IReadOnlyList<TokenizedPreferencePair>>? precompute = options.PrecomputeRefLogProbs
            ? pairs => PreferenceReferenceCache.Precompute(pairs, context.Model, scorer, options.MicroBatchSize, context.CancellationToken)
            : null;
        return context.Run(trainer, tokenizer.TokenizeAll, train, validation, test,
            (pairs, device) => PreferenceCollator.Collate(pairs, device), parameters, precompute);
    }
}
