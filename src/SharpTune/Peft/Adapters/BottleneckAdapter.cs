using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Adapters;

/// <summary>
/// Bottleneck adapters (Houlsby or Pfeiffer placement) on a whole model: wraps the target layers in
/// <see cref="BottleneckLayer"/>, freezes the rest, and saves SharpTune's documented layout
/// (<c>base_model.model.&lt;path&gt;.adapter_down.weight</c>, <c>.adapter_down.bias</c>, <c>.adapter_up.weight</c>,
/// <c>.adapter_up.bias</c>). The adapters are non-linear, so they cannot be merged into the base weights.
/// </summary>
public sealed class BottleneckAdapter : IPeftAdapter
{
    private const string KeyPrefix = "base_model.model.";
    private readonly List<(string Path, BottleneckLayer Layer)> layers = [];
    private readonly FrozenBase frozen = new();
    private CausalLanguageModel? model;
    private bool enabled = true;

    public BottleneckAdapter(BottleneckConfig config)
    {
        config.Validate();
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "BOTTLENECK").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new BottleneckAdapter(BottleneckConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="Inject"/>, with the targets resolved.</summary>
    public BottleneckConfig Config { get; private set; }

    public string PeftType => BottleneckConfig.PeftTypeName;

    /// <summary>The wrapped layers by module path, in model order.</summary>
    public IReadOnlyList<(string Path, BottleneckLayer Layer)> Layers => layers;

    public void Inject(CausalLanguageModel model)
    {
        if (this.model is not null) throw new InvalidOperationException("this bottleneck adapter is already injected into a model");
        if (ModuleSurgery.NamedModules(model).Any(m => m.Module is BottleneckLayer))
            throw new InvalidOperationException("the model already carries bottleneck adapters; discard them first");
        var targets = Config.TargetModules
            ?? TargetModules.Names(BottleneckConfig.DefaultTargetModules(model.Config.ModelType, Config.AdapterType));
        var selected = targets.Select(model);
        frozen.Freeze(model);
        foreach (var (path, module) in selected)
        {
            var layer = BottleneckLayer.FromBase((nn.Module<Tensor, Tensor>)module, Config);
            layer.Enabled = enabled;
            layer.train(module.training);
            ModuleSurgery.Replace(model, path, layer);
            layers.Add((path, layer));
        }
        Config = Config with { TargetModules = targets.Expand(model) };
        this.model = model;
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters =>
        layers.SelectMany(l => LayerParameters(l.Layer).Select(p => ($"{l.Path}.{p.Suffix}", p.Parameter))).ToList();

    public IReadOnlyDictionary<string, Tensor> AdapterStateDict()
    {
        RequireInjected();
        var state = new Dictionary<string, Tensor>();
        foreach (var (path, layer) in layers)
            foreach (var (suffix, parameter) in LayerParameters(layer))
                state[KeyPrefix + path + "." + suffix] = parameter;
        return state;
    }

    public void LoadAdapterState(IReadOnlyDictionary<string, Tensor> state) =>
        AdapterState.CopyInto(AdapterStateDict(), state, "bottleneck adapter");

    public bool Enabled
    {
        get => enabled;
        set
        {
            enabled = value;
            foreach (var (_, layer) in layers) layer.Enabled = value;
        }
    }

    /// <summary>Always throws: a non-linear adapter has no equivalent change of the base weights.</summary>
    public void MergeAndUnload() => throw new NotSupportedException(
        "bottleneck adapters cannot be merged into the base weights: down-projection → non-linearity → up-projection " +
        "is not a linear map. Serve the base model with the adapter folder, or use LoRA/IA3 when a merged model is needed.");

    public void Unload()
    {
        RequireInjected();
        foreach (var (path, layer) in layers)
        {
            ModuleSurgery.Replace(model!, path, layer.base_layer);
            // Disposing the wrapper would also dispose the base layer it holds: free only the adapter's own modules.
            layer.adapter_down.Dispose();
            layer.adapter_up.Dispose();
        }
        frozen.Restore();
        layers.Clear();
        model = null;
    }

    public JsonObject AdapterConfigJson() => Config.ToJson();

    private static IEnumerable<(string Suffix, Parameter Parameter)> LayerParameters(BottleneckLayer layer)
    {
        yield return ("adapter_down.weight", layer.adapter_down.weight!);
        yield return ("adapter_down.bias", layer.adapter_down.bias!);
        yield return ("adapter_up.weight", layer.adapter_up.weight!);
        yield return ("adapter_up.bias", layer.adapter_up.bias!);
    }

    private void RequireInjected()
    {
        if (model is null) throw new InvalidOperationException("the bottleneck adapter is not injected into a model (call Inject first)");
    }
}
