using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Peft.IA3;

/// <summary>
/// (IA)³ on a whole model (PEFT's IA3): learned vectors rescale the keys and values (k_proj/v_proj outputs, GPT-2's
/// whole c_attn output) and the MLP's intermediate activations (the input of down_proj / mlp.c_proj), everything else
/// frozen. Saved in PEFT's layout, <c>base_model.model.&lt;path&gt;.ia3_l</c>. Mergeable: the vectors fold into the weights.
/// </summary>
public sealed class IA3Adapter : WrappingAdapter<IA3Linear>
{
    private const string Suffix = "ia3_l";
    private HashSet<string> feedforwardPaths = [];
    private TargetModules? feedforwardExpanded;

    public IA3Adapter(IA3Config config) => Config = config;

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "IA3").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new IA3Adapter(IA3Config.FromJson(json, source));

    /// <summary>The configuration; after <see cref="WrappingAdapter{TLayer}.Inject"/>, with the targets resolved as PEFT saves them.</summary>
    public IA3Config Config { get; private set; }

    public override string PeftType => IA3Config.PeftTypeName;

    protected override string MethodName => "IA3";

    private TargetModules Targets(CausalLanguageModel model) =>
        Config.TargetModules ?? TargetModules.Names(IA3Config.DefaultTargetModules(model.Config.ModelType));

    protected override IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model)
    {
        // PEFT checks feedforward_modules ⊆ target_modules on the names as given (IA3Config.__post_init__), before
        // defaults fill either; a feed-forward module that ends up untargeted is simply not wrapped.
        Config.Validate("IA3");
        var feedforward = Config.FeedforwardModules ?? TargetModules.Names(IA3Config.DefaultFeedforwardModules(model.Config.ModelType));
        (var selected, savedTargets) = SelectUntiedTargets(model, Targets(model), Config.ExcludeModules);
        feedforwardExpanded = feedforward.Expand(model);
        var expanded = feedforwardExpanded;
        feedforwardPaths = selected.Where(s => expanded.MatchesAsPlainSuffix(s.Path)).Select(s => s.Path).ToHashSet();
        return selected;
    }

    protected override IA3Linear Wrap(string path, nn.Module<Tensor, Tensor> baseLayer) =>
        IA3Linear.FromBase(baseLayer, feedforwardPaths.Contains(path), Config.InitIA3Weights);

    private TargetModules? savedTargets;

    protected override void OnInjected(CausalLanguageModel model) => Config = Config with
    {
        TargetModules = savedTargets,
        FeedforwardModules = feedforwardExpanded,
        FanInFanOut = Layers.Any(l => l.Layer.FanInFanOut),   // PEFT sets it itself for Conv1D targets
    };

    protected override nn.Module<Tensor, Tensor> Fuse(IA3Linear layer) => layer.Fuse();

    protected override IReadOnlyList<string> ModulesToSave => Config.ModulesToSave;

    // Some tools write "…ia3_l.weight"; PEFT itself writes "…ia3_l". Both load.
    protected override string NormaliseKey(string key) =>
        key.EndsWith($".{Suffix}.weight", StringComparison.Ordinal) ? key[..^".weight".Length] : key;

    public override JsonObject AdapterConfigJson() => Config.ToJson();
}
