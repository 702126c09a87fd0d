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
    private TargetModules? savedTargets;

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

    protected override IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model)
    {
        var targets = Config.TargetModules ?? TargetModules.Names(OftConfig.DefaultTargetModules(model.Config.ModelType));
        (var selected, savedTargets) = SelectUntiedTargets(model, targets, Config.ExcludeModules);
        foreach (var (path, module) in selected)
        {
            if (module is not Linear)
                throw new NotSupportedException(
                    $"OFT: target module '{path}' is a {module.GetType().Name}; SharpTune's OFT wraps nn.Linear layers only: GPT-2's " +
                    "Conv1D (which PEFT refuses too) and quantized layers (which PEFT's wraps through bitsandbytes) cannot be targeted: " +
                    "choose Linear targets, or load the base unquantized");
            Config.BlocksFor(path, BaseLayer.Shape(module).In);   // every layer checked before any is wrapped
        }
        return selected;
    }

    protected override OftLinear Wrap(string path, nn.Module<Tensor, Tensor> baseLayer) => OftLinear.FromBase(baseLayer, Config, path);

    // "all-linear" expanded, as PEFT saves it.
    protected override void OnInjected(CausalLanguageModel model) => Config = Config with { TargetModules = savedTargets };

    protected override nn.Module<Tensor, Tensor> Fuse(OftLinear layer) => layer.Fuse();

    protected override IReadOnlyList<string> ModulesToSave => Config.ModulesToSave;
}
