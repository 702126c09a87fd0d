using System.Runtime.CompilerServices;
using SharpTune.Models;
using TorchSharp.Modules;

namespace SharpTune.Peft;

/// <summary>
/// The adapter with <see cref="IAdapterTrainingHooks"/> injected into each model, so that a trainer given only the model
/// and the parameters to train runs the adapter's hooks: an AdaLoRA adapter never trains as a fixed-rank one because its
/// caller did not pass the hooks on. Adapters register on injection and leave on unload or merge.
/// </summary>
internal static class InjectedTrainingHooks
{
    private static readonly ConditionalWeakTable<CausalLanguageModel, IAdapterTrainingHooks> ByModel = new();

    public static void Register(CausalLanguageModel model, IAdapterTrainingHooks hooks) => ByModel.AddOrUpdate(model, hooks);

    public static void Unregister(CausalLanguageModel model, IAdapterTrainingHooks hooks)
    {
        if (ByModel.TryGetValue(model, out var current) && ReferenceEquals(current, hooks)) ByModel.Remove(model);
    }

    /// <summary>
    /// The hooks of the adapter injected into <paramref name="model"/> when <paramref name="trainable"/> holds any of its
    /// parameters (training other parameters, e.g. a second adapter's, does not run them); else null.
    /// </summary>
    public static IAdapterTrainingHooks? Find(CausalLanguageModel model, IReadOnlyList<(string Name, Parameter Parameter)> trainable)
    {
        if (!ByModel.TryGetValue(model, out var hooks)) return null;
        if (hooks is not IPeftAdapter adapter) return hooks;
        var trained = trainable.Select(t => t.Parameter).ToHashSet(ReferenceEqualityComparer.Instance);
        return adapter.TrainableParameters.Any(p => trained.Contains(p.Parameter)) ? hooks : null;
    }

    /// <summary>How errors name the hooks' adapter: its PEFT type, else its class.</summary>
    public static string Describe(IAdapterTrainingHooks hooks) => hooks is IPeftAdapter adapter ? adapter.PeftType : hooks.GetType().Name;
}
