using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.Lora;

/// <summary>
/// LoRA (and DoRA, rsLoRA) on a whole model: wraps the target layers in <see cref="LoraLinear"/>, freezes the rest,
/// and saves/loads PEFT's key layout (<c>base_model.model.&lt;path&gt;.lora_A.weight</c> …).
/// </summary>
public sealed class LoraAdapter : IPeftAdapter
{
    private const string KeyPrefix = "base_model.model.";
    private readonly List<(string Path, LoraLinear Layer)> layers = [];
    private readonly FrozenBase frozen = new();
    private CausalLanguageModel? model;
    private bool enabled = true;

    public LoraAdapter(LoraConfig config)
    {
        config.Validate();
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "LORA").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new LoraAdapter(LoraConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="Inject"/>, with the targets resolved as PEFT saves them.</summary>
    public LoraConfig Config { get; private set; }

    public string PeftType => LoraConfig.PeftTypeName;

    /// <summary>The wrapped layers by module path, in model order.</summary>
    public IReadOnlyList<(string Path, LoraLinear Layer)> Layers => layers;

    public void Inject(CausalLanguageModel model)
    {
        if (this.model is not null) throw new InvalidOperationException("this LoRA adapter is already injected into a model");
        if (ModuleSurgery.NamedModules(model).Any(m => m.Module is LoraLinear))
            throw new InvalidOperationException("the model already carries LoRA layers; merge or discard them first");
        var targets = Config.TargetModules ?? TargetModules.Names(LoraConfig.DefaultTargetModules(model.Config.ModelType));
        var selected = targets.Select(model);
        var savedTargets = targets.Expand(model);

        frozen.Freeze(model);
        foreach (var (path, module) in selected)
        {
            var layer = LoraLinear.FromBase((nn.Module<Tensor, Tensor>)module, Config.R, Config.Scaling, Config.LoraDropout,
                Config.UseDora, Config.InitLoraWeights);
            layer.Enabled = enabled;
            layer.train(module.training);   // a new module starts in training mode: an eval model must not get dropout
            ModuleSurgery.Replace(model, path, layer);
            layers.Add((path, layer));
        }
        // PEFT sets fan_in_fan_out for Conv1D targets itself; the saved config says what the layers really are.
        Config = Config with { TargetModules = savedTargets, FanInFanOut = layers.Any(l => l.Layer.FanInFanOut) };
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

    public void LoadAdapterState(IReadOnlyDictionary<string, Tensor> state)
    {
        var expected = AdapterStateDict();
        // Recent PEFT versions may write DoRA's magnitude as "...lora_magnitude_vector.weight"; both spellings load.
        var normalised = new Dictionary<string, Tensor>();
        foreach (var (key, tensor) in state)
        {
            var name = key.EndsWith(".lora_magnitude_vector.weight", StringComparison.Ordinal) ? key[..^".weight".Length] : key;
            if (!normalised.TryAdd(name, tensor))
                throw new InvalidDataException($"adapter tensors hold '{name}' twice (with and without '.weight')");
        }
        var missing = expected.Keys.Where(k => !normalised.ContainsKey(k)).ToList();
        var unexpected = normalised.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new InvalidDataException(
                "adapter tensors do not match this LoRA configuration and model." +
                (missing.Count > 0 ? $" Missing ({missing.Count}): {string.Join(", ", missing.Take(8))}{(missing.Count > 8 ? ", …" : "")}." : "") +
                (unexpected.Count > 0 ? $" Unexpected ({unexpected.Count}): {string.Join(", ", unexpected.Take(8))}{(unexpected.Count > 8 ? ", …" : "")}." : ""));
        foreach (var (key, target) in expected)
        {
            var source = normalised[key];
            if (!source.shape.SequenceEqual(target.shape))
                throw new InvalidDataException(
                    $"adapter tensor '{key}' has shape [{string.Join(", ", source.shape)}], the model expects [{string.Join(", ", target.shape)}]");
        }
        using var noGrad = no_grad();
        foreach (var (key, target) in expected)
            target.copy_(normalised[key]);   // copy_ converts the saved dtype (e.g. bf16) to the fp32 parameter
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
            // Free the adapter's tensors now; disposing the wrapper itself would also dispose the base layer it holds.
            layer.lora_A.Dispose();
            layer.lora_B.Dispose();
            layer.lora_magnitude_vector?.Dispose();
        }
        frozen.Restore();
        layers.Clear();
        model = null;
    }

    public JsonObject AdapterConfigJson() => Config.ToJson();

    private static IEnumerable<(string Suffix, Parameter Parameter)> LayerParameters(LoraLinear layer)
    {
        yield return ("lora_A.weight", layer.lora_A.weight!);
        yield return ("lora_B.weight", layer.lora_B.weight!);
        if (layer.lora_magnitude_vector is { } magnitude) yield return ("lora_magnitude_vector", magnitude);
    }

    private void RequireInjected()
    {
        if (model is null) throw new InvalidOperationException("the LoRA adapter is not injected into a model (call Inject first)");
    }
}
