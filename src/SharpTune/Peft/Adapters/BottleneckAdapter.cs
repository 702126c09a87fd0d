using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Peft.Adapters;

/// <summary>
/// Bottleneck adapters (Houlsby or Pfeiffer placement) on a whole model: wraps the target layers in
/// <see cref="BottleneckLayer"/>, freezes the rest, and saves SharpTune's documented layout
/// (<c>base_model.model.&lt;path&gt;.adapter_down.weight</c>, <c>.adapter_down.bias</c>, <c>.adapter_up.weight</c>,
/// <c>.adapter_up.bias</c>). The adapters are non-linear, so they cannot be merged into the base weights.
/// </summary>
public sealed class BottleneckAdapter : WrappingAdapter<BottleneckLayer>
{
    public BottleneckAdapter(BottleneckConfig config)
    {
        config.Validate();
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "BOTTLENECK").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new BottleneckAdapter(BottleneckConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="WrappingAdapter{TLayer}.Inject"/>, with the targets resolved.</summary>
    public BottleneckConfig Config { get; private set; }

    public override string PeftType => BottleneckConfig.PeftTypeName;

    protected override string MethodName => "bottleneck adapter";

    private TargetModules Targets(CausalLanguageModel model) =>
        Config.TargetModules ?? TargetModules.Names(BottleneckConfig.DefaultTargetModules(model.Config.ModelType, Config.AdapterType));

    protected override IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model)
    {
        savedTargets = Targets(model).Expand(model);   // before wrapping: "all-linear" must name the base layers
        return Targets(model).Select(model);
    }

    protected override BottleneckLayer Wrap(string path, nn.Module<Tensor, Tensor> baseLayer) =>
        BottleneckLayer.FromBase(baseLayer, Config);

    private TargetModules? savedTargets;

    protected override void OnInjected(CausalLanguageModel model) => Config = Config with { TargetModules = savedTargets };

    /// <summary>Always throws: a non-linear adapter has no equivalent change of the base weights.</summary>
    public override void MergeAndUnload() => throw new NotSupportedException(
        "bottleneck adapters cannot be merged into the base weights: down-projection → non-linearity → up-projection " +
        "is not a linear map. Serve the base model with the adapter folder, or use LoRA/IA3 when a merged model is needed.");

    public override JsonObject AdapterConfigJson() => Config.ToJson();
}
