using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.IA3;

/// <summary>
/// (IA)³ on a whole model (PEFT's IA3): learned vectors rescale the keys and values (k_proj/v_proj outputs, GPT-2's
/// whole c_attn output) and the MLP's intermediate activations (the input of down_proj / mlp.c_proj), everything else
/// frozen. Saved in PEFT's layout, <c>base_model.model.&lt;path&gt;.ia3_l</c>. Mergeable: the vectors fold into the weights.
/// </summary>
public sealed class IA3Adapter : IPeftAdapter
{
    private const string KeyPrefix = "base_model.model.";
    private const string Suffix = "ia3_l";
    private readonly List<(string Path, IA3Linear Layer)> layers = [];
    private readonly FrozenBase frozen = new();
    private CausalLanguageModel? model;
    private bool enabled = true;

    public IA3Adapter(IA3Config config) => Config = config;

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "IA3").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new IA3Adapter(IA3Config.FromJson(json, source));

    /// <summary>The configuration; after <see cref="Inject"/>, with the targets resolved as PEFT saves them.</summary>
    public IA3Config Config { get; private set; }

    public string PeftType => IA3Config.PeftTypeName;

    /// <summary>The wrapped layers by module path, in model order.</summary>
    public IReadOnlyList<(string Path, IA3Linear Layer)> Layers => layers;

    public void Inject(CausalLanguageModel model)
    {
        if (this.model is not null) throw new InvalidOperationException("this IA3 adapter is already injected into a model");
        if (ModuleSurgery.NamedModules(model).Any(m => m.Module is IA3Linear))
            throw new InvalidOperationException("the model already carries IA3 layers; merge or discard them first");
        var targets = Config.TargetModules ?? TargetModules.Names(IA3Config.DefaultTargetModules(model.Config.ModelType));
        var feedforward = Config.FeedforwardModules ?? TargetModules.Names(IA3Config.DefaultFeedforwardModules(model.Config.ModelType));
        var selected = targets.Select(model);
        var feedforwardExpanded = feedforward.Expand(model);
        var feedforwardPaths = selected.Where(s => feedforwardExpanded.Matches(s.Path)).Select(s => s.Path).ToHashSet();
        // PEFT: feedforward_modules must be a subset of target_modules.
        var strays = ModuleSurgery.NamedModules(model)
            .Where(m => TargetModules.IsLinear(m.Module) && feedforwardExpanded.Matches(m.Path) && !feedforwardPaths.Contains(m.Path))
            .Select(m => m.Path).ToList();
        if (strays.Count > 0)
            throw new ArgumentException(
                $"IA3: feedforward_modules must be a subset of target_modules; not targeted: {string.Join(", ", strays.Take(4))}");

        frozen.Freeze(model);
        foreach (var (path, module) in selected)
        {
            var layer = IA3Linear.FromBase((nn.Module<Tensor, Tensor>)module, feedforwardPaths.Contains(path), Config.InitIA3Weights);
            layer.Enabled = enabled;
            layer.train(module.training);
            ModuleSurgery.Replace(model, path, layer);
            layers.Add((path, layer));
        }
        Config = Config with
        {
            TargetModules = targets.Expand(model),
            FeedforwardModules = feedforwardExpanded,
            FanInFanOut = layers.Any(l => l.Layer.FanInFanOut),   // PEFT sets it itself for Conv1D targets
        };
        this.model = model;
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters =>
        layers.Select(l => ($"{l.Path}.{Suffix}", l.Layer.ia3_l)).ToList();

    public IReadOnlyDictionary<string, Tensor> AdapterStateDict()
    {
        RequireInjected();
        return layers.ToDictionary(l => $"{KeyPrefix}{l.Path}.{Suffix}", l => (Tensor)l.Layer.ia3_l);
    }

    public void LoadAdapterState(IReadOnlyDictionary<string, Tensor> state)
    {
        // Some tools write "…ia3_l.weight"; PEFT itself writes "…ia3_l". Both load.
        var normalised = new Dictionary<string, Tensor>();
        foreach (var (key, tensor) in state)
        {
            var name = key.EndsWith($".{Suffix}.weight", StringComparison.Ordinal) ? key[..^".weight".Length] : key;
            if (!normalised.TryAdd(name, tensor))
                throw new InvalidDataException($"adapter tensors hold '{name}' twice (with and without '.weight')");
        }
        AdapterState.CopyInto(AdapterStateDict(), normalised, "IA3");
    }

    public bool Enabled
    {
        get => enabled;
        set
        {
            enabled = value;
            foreach (var (_, layer) in layers) layer.Enabled = value;
        }
    }

    public void MergeAndUnload() => Restore(merge: true);

    public void Unload() => Restore(merge: false);

    private void Restore(bool merge)
    {
        RequireInjected();
        foreach (var (path, layer) in layers)
        {
            ModuleSurgery.Replace(model!, path, merge ? layer.Fuse() : layer.base_layer);
            layer.ia3_l.Dispose();   // disposing the wrapper would also dispose the base layer it holds
        }
        frozen.Restore();
        layers.Clear();
        model = null;
    }

    public JsonObject AdapterConfigJson() => Config.ToJson();

    private void RequireInjected()
    {
        if (model is null) throw new InvalidOperationException("the IA3 adapter is not injected into a model (call Inject first)");
    }
}
