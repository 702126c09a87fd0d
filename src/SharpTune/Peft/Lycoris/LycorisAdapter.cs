using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lycoris;

/// <summary>
/// What LoHa and LoKr adapters share on top of <see cref="WrappingAdapter{TLayer}"/>, as PEFT's <c>LycorisTuner</c>:
/// target selection (target_modules, PEFT's default table, exclude_modules; modules saved whole are never wrapped),
/// nn.Linear targets only, per-module rank and alpha from rank_pattern / alpha_pattern, and merging ΔW into the base.
/// </summary>
public abstract class LycorisAdapter<TLayer> : WrappingAdapter<TLayer> where TLayer : LycorisLinear
{
    private TargetModules? savedTargets;

    /// <summary>The shared settings of the method's configuration.</summary>
    protected abstract LycorisConfig Settings { get; }

    /// <summary>Records the resolved targets ("all-linear" expanded) in the configuration, as PEFT saves them.</summary>
    protected abstract void RecordTargets(TargetModules? targets);

    /// <summary>Wraps one nn.Linear with the rank and alpha its path resolves to.</summary>
    protected abstract TLayer Wrap(Linear baseLayer, int r, double alpha);

    protected override string MethodName => Settings.MethodName;

    private TargetModules Targets(CausalLanguageModel model) =>
        Settings.TargetModules ?? TargetModules.Names(Settings.DefaultTargetModules(model.Config.ModelType));

    protected override IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model)
    {
        Settings.Validate($"{MethodName} config");
        if (SavedModules.SavesTiedEmbedding(model, Settings.ModulesToSave))
            throw new NotSupportedException(
                $"{MethodName}: modules_to_save holds the token embedding of a model whose output head is tied to it: PEFT's " +
                $"{MethodName} then keeps the head at the base weights while the embedding is trained, which SharpTune does not " +
                "support (it trains them as one); use LoRA with ensure_weight_tying, or save an untied module");
        var targets = Targets(model);
        var selected = targets.Select(model)
            .Where(s => Settings.ModulesToSave.Count == 0 || !TargetModules.Names(Settings.ModulesToSave).Matches(s.Path))   // PEFT never wraps a module it saves whole
            .Where(s => Settings.ExcludeModules is not { } excluded || !excluded.Matches(s.Path))
            .ToList();
        if (selected.Count == 0)
            throw new ArgumentException(
                $"{MethodName}: target_modules {targets.ToJson().ToJsonString()} selected no module once exclude_modules and modules_to_save were applied");
        foreach (var (path, module) in selected)
            if (module is not Linear)
                throw new NotSupportedException(
                    $"{MethodName}: target module '{path}' is a {module.GetType().Name}; PEFT's {MethodName} wraps nn.Linear layers " +
                    "(and convolutions) only, so GPT-2's Conv1D and quantized layers cannot be targeted: choose Linear targets, " +
                    "or load the base unquantized");
        savedTargets = targets.Expand(model);   // before wrapping: "all-linear" must name the base layers
        return selected;
    }

    protected sealed override TLayer Wrap(string path, nn.Module<Tensor, Tensor> baseLayer) =>
        Wrap((Linear)baseLayer, Settings.RankFor(path), Settings.AlphaFor(path));

    protected override void OnInjected(CausalLanguageModel model) => RecordTargets(savedTargets);

    protected override nn.Module<Tensor, Tensor> Fuse(TLayer layer) => layer.Fuse();

    protected override IReadOnlyList<string> ModulesToSave => Settings.ModulesToSave;
}
