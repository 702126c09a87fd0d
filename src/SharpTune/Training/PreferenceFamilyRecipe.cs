using SharpTune.Data;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// ORPO, SimPO and KTO within <see cref="FineTuneJob"/>, on the common trainer. ORPO and SimPO need no reference model;
/// KTO's reference is the policy with its adapter switched off, or a frozen copy of the base for full fine-tuning.
/// </summary>
internal static class PreferenceFamilyRecipe
{
    public static FineTuneResult RunPaired(RecipeContext context, ITrainingObjective objective, PreferenceTokenizer tokenizer,
        IReadOnlyList<TrainingExample> train, IReadOnlyList<TrainingExample> validation, IReadOnlyList<TrainingExample> test,
        ParameterSummary parameters)
    {
        var trainer = new Trainer(context.Model, context.Trainable, context.Options, context.SaveModel, objective);
        return context.Run(trainer, tokenizer.TokenizeAll, train, validation, test,
            (pairs, device) => PreferenceCollator.Collate(pairs, device), parameters);
    }

    public static FineTuneResult RunKto(RecipeContext context, KtoSettings settings, IPeftAdapter? adapter, string modelDir, ScalarType dtype,
        KtoTokenizer tokenizer, IReadOnlyList<TrainingExample> train, IReadOnlyList<TrainingExample> validation,
        IReadOnlyList<TrainingExample> test, ParameterSummary parameters)
    {
        var klRows = settings.LossType == KtoLossType.Kto;
        if (klRows && context.Options.MicroBatchSize < 2)
            throw new ArgumentException("KTO estimates its KL reference point from mismatched pairs within a micro-batch: use micro_batch_size ≥ 2");
        using var frozenCopy = adapter is null ? AddedTokensSetup.LoadFrozenCopy(modelDir, dtype, context.Model, context.Options) : null;
        var reference = adapter is not null ? DpoReference.AdapterDisabled(adapter) : DpoReference.FrozenModel(frozenCopy!);
        context.Log?.Invoke("KTO reference: " + (adapter is not null ? "the base model (adapter disabled)" : "a frozen copy of the base model"));
        var trainer = new Trainer(context.Model, context.Trainable, context.Options, context.SaveModel, new KtoObjective(settings, reference));
        return context.Run(trainer, tokenizer.TokenizeAll, train, validation, test,
            (examples, device) => KtoBatch.Collate(examples, device, klRows, context.Options.MaxSeqLength), parameters);
    }
}
