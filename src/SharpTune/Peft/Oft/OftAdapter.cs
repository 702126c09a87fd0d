using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Oft;

/// <summary>
/// OFT on a whole model (PEFT's OFTModel): wraps the target nn.Linear layers in <see cref="OftLinear"/>, freezes the
/// rest, and saves/loads PEFT's keys (<c>base_model.model.&lt;path&gt;.oft_R.weight</c>). Target selection as LoHa/LoKr:
/// target_modules, PEFT's default table, exclude_modules (modules saved whole are never wrapped). Mergeable.
/// </summary>
public sealed class OftAdapter : WrappingAdapter<OftLinear>
{
    private readonly List<string> warnings = [];

    public OftAdapter(OftConfig config)
    {
        config.Validate("OFT config");
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "OFT").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new OftAdapter(OftConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="WrappingAdapter{TLayer}.Inject"/>, with the targets resolved as PEFT saves them.</summary>
    public OftConfig Config { get; private set; }

    public override string PeftType => OftConfig.PeftTypeName;

    protected override string MethodName => "OFT";

    public override JsonObject AdapterConfigJson() => Config.ToJson();

    /// <summary>
    /// What PEFT warns of while injecting: a block size (or r) that does not divide a target's in_features, adjusted to the
    /// nearest divisor (one line per distinct adjustment, naming its layers); a saved adapter that keeps PEFT ≤ 0.17's
    /// Cayley–Neumann series.
    /// </summary>
    public override IReadOnlyList<string> Warnings => warnings;

    protected override IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model)
    {
        var targets = Config.TargetModules ?? TargetModules.Names(OftConfig.DefaultTargetModules(model.Config.ModelType));
        var selected = SelectUntiedLinearTargets(model, targets, Config.ExcludeModules);
        warnings.Clear();
        // Every layer checked before any is wrapped.
        var adjusted = selected.Select(s => (s.Path, In: BaseLayer.Shape(s.Module).In))
            .Select(s => (s.Path, s.In, Config.BlocksFor(s.Path, s.In).Warning)).Where(s => s.Warning is not null).ToList();
        foreach (var group in adjusted.GroupBy(s => (s.In, s.Warning)))
        {
            var paths = group.Select(s => s.Path).ToList();
            warnings.Add($"OFT: {group.Key.Warning} (PEFT's update_layer, for in_features {group.Key.In}: {paths.Count} layer" +
                         $"{(paths.Count == 1 ? "" : "s")}, {string.Join(", ", paths.Take(3))}{(paths.Count > 3 ? ", …" : "")})");
        }
        if (Config.LegacyNeumannSeries)
            warnings.Add($"OFT: peft_version {Config.PeftVersion ?? "(absent)"} predates PEFT {OftConfig.SeriesVersion}'s Cayley–Neumann series: " +
                         "the rotations follow PEFT ≤ 0.17's series the adapter was trained with (PEFT itself now warns and uses the new one; " +
                         "retrain to move to it)");
        return selected;
    }

    protected override OftLinear Wrap(string path, nn.Module<Tensor, Tensor> baseLayer) => OftLinear.FromBase(baseLayer, Config, path);

    // "all-linear" expanded, as PEFT saves it.
    protected override void OnInjected(CausalLanguageModel model) => Config = Config with { TargetModules = ResolvedTargets };

    protected override nn.Module<Tensor, Tensor> Fuse(OftLinear layer) => layer.Fuse();

    protected override IReadOnlyList<string> ModulesToSave => Config.ModulesToSave;
}
