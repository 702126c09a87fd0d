using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lycoris;

/// <summary>
/// A LoHa or LoKr adapter on a whole model, as PEFT's <c>LycorisTuner</c> (LoHaModel, LoKrModel): wraps the target
/// nn.Linear layers, freezes the rest, and saves/loads PEFT's keys (<c>base_model.model.&lt;path&gt;.hada_w1_a</c> …).
/// Target selection: target_modules, PEFT's default table, exclude_modules (modules saved whole are never wrapped);
/// per-module rank and alpha from rank_pattern / alpha_pattern; mergeable.
/// </summary>
public abstract class LycorisAdapter<TLayer, TConfig> : WrappingAdapter<TLayer> where TLayer : LycorisLinear where TConfig : LycorisConfig
{
    protected LycorisAdapter(TConfig config)
    {
        config.Validate($"{config.MethodName} config");
        Config = config;
    }

    /// <summary>The configuration; after <see cref="WrappingAdapter{TLayer}.Inject"/>, with the targets resolved as PEFT saves them.</summary>
    public TConfig Config { get; private set; }

    public override string PeftType => Config.PeftType;

    public override JsonObject AdapterConfigJson() => Config.ToJson();

    /// <summary>Wraps one nn.Linear with the rank and alpha its path resolves to.</summary>
    protected abstract TLayer Wrap(Linear baseLayer, int r, double alpha);

    protected override string MethodName => Config.MethodName;

    private TargetModules Targets(CausalLanguageModel model) =>
        Config.TargetModules ?? TargetModules.Names(Config.DefaultTargetModules(model.Config.ModelType));

    protected override IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model)
    {
        Config.Validate($"{MethodName} config");
        return SelectUntiedLinearTargets(model, Targets(model), Config.ExcludeModules);
    }

    protected sealed override TLayer Wrap(string path, nn.Module<Tensor, Tensor> baseLayer) =>
        Wrap((Linear)baseLayer, Config.RankFor(path), Config.AlphaFor(path));

    // "all-linear" expanded, as PEFT saves it.
    protected override void OnInjected(CausalLanguageModel model) => Config = (TConfig)(Config with { TargetModules = ResolvedTargets });

    protected override nn.Module<Tensor, Tensor> Fuse(TLayer layer) => layer.Fuse();

    protected override IReadOnlyList<string> ModulesToSave => Config.ModulesToSave;
}
