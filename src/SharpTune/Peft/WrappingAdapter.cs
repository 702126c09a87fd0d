using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// The plumbing every method that wraps layers shares (LoRA, IA3, LoHa/LoKr, VeRA, bottleneck adapters): select the targets, freeze
/// the base, swap each target for its wrapper, list trainable parameters, save and load them under PEFT's keys
/// (<c>base_model.model.&lt;path&gt;.&lt;suffix&gt;</c>), switch them on and off, and unload or merge them. A method
/// supplies its targets, how to wrap one layer, and how to fold a wrapper back. Adapters on parameters rather than layers
/// (LoRA's target_parameters, see <see cref="IParameterAdapter"/>) are saved, switched and removed the same way.
/// </summary>
public abstract class WrappingAdapter<TLayer> : IPeftAdapter where TLayer : nn.Module<Tensor, Tensor>, IWrappingLayer
{
    private const string KeyPrefix = "base_model.model.";
    private readonly List<(string Path, TLayer Layer)> layers = [];
    private readonly List<(string Path, IParameterAdapter Adapter)> parameterAdapters = [];
    private readonly FrozenBase frozen = new();
    private SavedModules? saved;
    private TrainableTokens? tokens;
    private CausalLanguageModel? model;
    private bool enabled = true;

    public abstract string PeftType { get; }

    /// <summary>The method's name in error messages ("LoRA", "IA3"…).</summary>
    protected abstract string MethodName { get; }

    /// <summary>The wrapped layers by module path, in model order.</summary>
    public IReadOnlyList<(string Path, TLayer Layer)> Layers => layers;

    /// <summary>The layers to wrap, resolved against <paramref name="model"/> (with a clear error when none match).</summary>
    protected abstract IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model);

    /// <summary>Wraps one target layer.</summary>
    protected abstract TLayer Wrap(string path, nn.Module<Tensor, Tensor> baseLayer);

    /// <summary>
    /// Attaches the method's adapters on parameters (PEFT's <c>target_parameters</c>), once the layers are wrapped and the
    /// base frozen, each under the path of the module holding the parameters; none by default.
    /// </summary>
    private protected virtual IReadOnlyList<(string Path, IParameterAdapter Adapter)> AttachParameterAdapters(CausalLanguageModel model) => [];

    /// <summary>Whether <paramref name="model"/> already carries this method's adapters on parameters (which leave no layer in the tree).</summary>
    private protected virtual bool CarriesOwnParameterAdapter(CausalLanguageModel model) => false;

    /// <summary>The adapters on parameters by the path of the module holding them, in model order.</summary>
    private protected IReadOnlyList<(string Path, IParameterAdapter Adapter)> ParameterAdapters => parameterAdapters;

    /// <summary>Called once every target is wrapped, to record the resolved targets in the configuration.</summary>
    protected virtual void OnInjected(CausalLanguageModel model) { }

    /// <summary>The base layer with the wrapper's effect folded in (the default: not mergeable).</summary>
    protected virtual nn.Module<Tensor, Tensor> Fuse(TLayer layer) =>
        throw new NotSupportedException($"{MethodName} cannot be merged into the base weights");

    /// <summary>The base layer as it was before wrapping, for unloading (the default: the wrapped layer, untouched).</summary>
    protected virtual nn.Module<Tensor, Tensor> Unwrap(TLayer layer) => layer.BaseModule;

    /// <summary>The saved key of a wrapper's parameter: <c>base_model.model.&lt;path&gt;.&lt;suffix&gt;</c>.</summary>
    protected string SavedKey(string path, string suffix) => KeyPrefix + SavedPath(path) + "." + suffix;

    /// <summary>
    /// A module path as the saved keys spell it (the default: as it is). An adapter of a model PEFT wraps without its
    /// head (FEATURE_EXTRACTION's AutoModel) drops the decoder's <see cref="CausalLanguageModel.BaseModelPrefix"/>.
    /// </summary>
    protected virtual string SavedPath(string path) => path;

    /// <summary>The model this adapter is injected into, or null before <see cref="Inject"/>.</summary>
    protected CausalLanguageModel? InjectedModel => model;

    /// <summary>PEFT's <c>modules_to_save</c>: whole modules trained and saved beside the wrappers (see <see cref="SavedModules"/>).</summary>
    protected virtual IReadOnlyList<string> ModulesToSave => [];

    /// <summary>
    /// PEFT's <c>trainable_token_indices</c>: rows of the token embedding (and so of a tied head) trained alone beside the
    /// wrappers (see <see cref="TrainableTokens"/>); empty = none.
    /// </summary>
    protected virtual IReadOnlyList<int> TrainableTokenIndices => [];

    /// <summary>
    /// What <paramref name="targets"/> select for a method that trains a tied embedding and head apart in PEFT (IA3, LoHa,
    /// LoKr, VeRA): refuses <see cref="ModulesToSave"/> holding the token embedding of a tied model, leaves out the modules saved
    /// whole (PEFT's check_target_module_exists never wraps those) and <paramref name="exclude"/>'s, and refuses a
    /// selection left empty. Also returns the targets as the adapter config saves them, expanded before any wrapping so
    /// that "all-linear" names the base layers.
    /// </summary>
    protected (List<(string Path, nn.Module Module)> Selected, TargetModules Saved) SelectUntiedTargets(
        CausalLanguageModel model, TargetModules targets, TargetModules? exclude)
    {
        if (SavedModules.SavesTiedEmbedding(model, ModulesToSave))
            throw new NotSupportedException(
                $"{MethodName}: modules_to_save holds the token embedding of a model whose output head is tied to it: PEFT's " +
                $"{MethodName} then keeps the head at the base weights while the embedding is trained, which SharpTune does not " +
                "support (it trains them as one); use LoRA with ensure_weight_tying, or save an untied module");
        var saved = ModulesToSave.Count == 0 ? null : TargetModules.Names(ModulesToSave);
        var selected = targets.Select(model)
            .Where(s => saved is null || !saved.Matches(s.Path))
            .Where(s => exclude is null || !exclude.Matches(s.Path))
            .ToList();
        if (selected.Count == 0)
            throw new ArgumentException(
                $"{MethodName}: target_modules {targets.ToJson().ToJsonString()} selected no module once exclude_modules and modules_to_save were applied");
        return (selected, targets.Expand(model));
    }

    /// <summary>
    /// <see cref="SelectUntiedTargets"/> for a method that wraps nn.Linear layers only (LoHa, LoKr, OFT): refuses a selected
    /// module of another kind, naming it, and keeps the targets as the adapter config saves them in
    /// <see cref="ResolvedTargets"/> (for <see cref="OnInjected"/> to record).
    /// </summary>
    protected List<(string Path, nn.Module Module)> SelectUntiedLinearTargets(CausalLanguageModel model, TargetModules targets, TargetModules? exclude)
    {
        var (selected, resolved) = SelectUntiedTargets(model, targets, exclude);
        foreach (var (path, module) in selected)
            if (module is not Linear)
                throw new NotSupportedException(
                    $"{MethodName}: target module '{path}' is a {module.GetType().Name}; SharpTune's {MethodName} wraps nn.Linear " +
                    "layers only: GPT-2's Conv1D (which PEFT refuses too) and quantized layers (which PEFT's wraps through " +
                    "bitsandbytes) cannot be targeted: choose Linear targets, or load the base unquantized");
        ResolvedTargets = resolved;
        return selected;
    }

    /// <summary>The targets <see cref="SelectUntiedLinearTargets"/> resolved, as the adapter config saves them ("all-linear" expanded).</summary>
    protected TargetModules? ResolvedTargets { get; private set; }

    /// <summary>
    /// Whether the saved state also holds the token embedding (and an untied head) whole beside
    /// <see cref="TrainableTokenIndices"/>' rows: set for a run that grew the vocabulary, as PEFT's
    /// <c>save_embedding_layers="auto"</c> saves them when the vocabulary size differs from the base's
    /// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40 src/peft/utils/save_and_load.py, get_peft_model_state_dict),
    /// so a base with the old vocabulary gets the resized rows back exactly (see <see cref="PeftAdapters.Load"/>).
    /// </summary>
    internal bool SavesResizedVocabulary { get; set; }

    /// <summary>
    /// Whether the targets count as targeting the embedding layers by PEFT's rule (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40
    /// src/peft/utils/save_and_load.py lines 211-223), which decides what <see cref="SavesResizedVocabulary"/> writes
    /// (see <see cref="SavedEmbeddingLayers"/>); false for a method without target_modules.
    /// </summary>
    private protected virtual bool TargetsEmbeddingLayers(CausalLanguageModel model) => false;

    /// <summary>Names of <see cref="ModulesToSave"/> that may match no module of the model.</summary>
    protected virtual IReadOnlyCollection<string> OptionalModulesToSave => [];

    /// <summary>Saved key spellings other tools write, mapped to ours (e.g. a trailing ".weight").</summary>
    protected virtual string NormaliseKey(string key) => key;

    /// <summary>
    /// Tensors the method saves once for the whole model beside the per-layer ones, under their full saved keys (VeRA's
    /// shared projections, <c>base_model.vera_A</c>); not trained. Loading copies the saved values into them.
    /// </summary>
    protected virtual IEnumerable<(string Key, Tensor Tensor)> SharedState() => [];

    /// <summary>
    /// The saved tensors (keys already normalised) as the method loads them: a method may check them or drop entries it
    /// does not load (the default: as they are).
    /// </summary>
    protected virtual IReadOnlyDictionary<string, Tensor> BeforeLoad(Dictionary<string, Tensor> state) => state;

    /// <summary>Called once the wrappers are gone (unloaded or merged), to free what the method shares between layers.</summary>
    protected virtual void OnRestored() { }

    public void Inject(CausalLanguageModel model)
    {
        if (this.model is not null) throw new InvalidOperationException($"this {MethodName} adapter is already injected into a model");
        if (ModuleSurgery.NamedModules(model).Any(m => m.Module is TLayer) || CarriesOwnParameterAdapter(model))
            throw new InvalidOperationException($"the model already carries {MethodName} layers or parameters; merge or discard them first");
        var selected = SelectTargets(model);
        var savedModules = SavedModules.Select(model, ModulesToSave, MethodName, OptionalModulesToSave);
        var trainableTokens = TrainableTokenIndices.Count == 0 ? null : TrainableTokens.Select(model, TrainableTokenIndices);
        if (trainableTokens is not null && savedModules.Parameters.Any(p => p.Name == model.EmbeddingParameterName))
            throw new ArgumentException($"trainable_token_indices and modules_to_save both train '{trainableTokens.Path}': " +
                                        "choose one (modules_to_save trains every row, trainable_token_indices the chosen ones)");
        frozen.Freeze(model);
        savedModules.Inject();
        savedModules.SetEnabled(enabled);
        saved = savedModules;
        trainableTokens?.Inject();
        trainableTokens?.SetEnabled(enabled);
        tokens = trainableTokens;
        foreach (var (path, module) in selected)
        {
            var layer = Wrap(path, (nn.Module<Tensor, Tensor>)module);
            layer.Enabled = enabled;
            layer.train(module.training);   // a new module starts in training mode: an eval model must not get dropout
            ModuleSurgery.Replace(model, path, layer);
            layers.Add((path, layer));
        }
        foreach (var (path, adapter) in AttachParameterAdapters(model))
        {
            adapter.Enabled = enabled;
            parameterAdapters.Add((path, adapter));
        }
        OnInjected(model);
        this.model = model;
        if (this is IAdapterTrainingHooks hooks) InjectedTrainingHooks.Register(model, hooks);   // a Trainer then runs them
    }

    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters =>
        layers.SelectMany(l => l.Layer.AdapterParameters().Select(p => ($"{l.Path}.{p.Suffix}", p.Parameter)))
            .Concat(parameterAdapters.SelectMany(a => a.Adapter.AdapterParameters().Select(p => ($"{a.Path}.{p.Suffix}", p.Parameter))))
            .Concat(saved?.Parameters ?? [])
            .Concat(tokens?.Delta is { } delta ? [($"{tokens.Path}.{TrainableTokens.SavedSuffix}", delta)] : []).ToList();

    public IReadOnlyDictionary<string, Tensor> AdapterStateDict()
    {
        if (model is null) throw new InvalidOperationException($"the {MethodName} adapter is not injected into a model (call Inject first)");
        var state = new Dictionary<string, Tensor>();
        foreach (var (path, layer) in layers)
            foreach (var (suffix, parameter) in layer.AdapterParameters())
                state[SavedKey(path, suffix)] = parameter;
        foreach (var (path, adapter) in parameterAdapters)
            foreach (var (suffix, parameter) in adapter.AdapterParameters())
                state[SavedKey(path, suffix)] = parameter;
        foreach (var (key, tensor) in SharedState())
            state[key] = tensor;
        foreach (var (name, parameter) in saved?.Parameters ?? [])
            state[KeyPrefix + SavedPath(name)] = parameter;
        if (tokens?.Delta is { } delta) state[SavedKey(tokens.Path, TrainableTokens.SavedSuffix)] = delta;
        if (SavesResizedVocabulary && tokens?.Delta is { } rows)
            // The frozen rows as they are (the trained ones live in the delta), under the keys PEFT writes for them.
            foreach (var (name, tensor) in SavedEmbeddingLayers.Entries(model, TargetsEmbeddingLayers(model), rows, saved))
                state.TryAdd(KeyPrefix + SavedPath(name), tensor);
        return state;
    }

    public void LoadAdapterState(IReadOnlyDictionary<string, Tensor> state)
    {
        var normalised = new Dictionary<string, Tensor>();
        foreach (var (key, tensor) in state)
        {
            var name = NormaliseKey(key);
            if (!normalised.TryAdd(name, tensor))
                throw new InvalidDataException($"adapter tensors hold '{name}' twice (with and without '.weight')");
        }
        AdapterState.CopyInto(AdapterStateDict(), BeforeLoad(normalised), MethodName);
    }

    public bool Enabled
    {
        get => enabled;
        set
        {
            enabled = value;
            foreach (var (_, layer) in layers) layer.Enabled = value;
            foreach (var (_, adapter) in parameterAdapters) adapter.Enabled = value;
            saved?.SetEnabled(value);
            tokens?.SetEnabled(value);
        }
    }

    public virtual void MergeAndUnload() => Restore(merge: true);

    public void Unload() => Restore(merge: false);

    private void Restore(bool merge)
    {
        if (model is null) throw new InvalidOperationException($"the {MethodName} adapter is not injected into a model (call Inject first)");
        foreach (var (path, layer) in layers)
        {
            var restored = merge ? Fuse(layer) : Unwrap(layer);
            ModuleSurgery.Replace(model, path, restored);
            if (!ReferenceEquals(restored, layer.BaseModule)) layer.BaseModule.Dispose();   // a merged quantized layer became a new Linear
            layer.DisposeAdapter();
        }
        foreach (var (_, adapter) in parameterAdapters) adapter.Detach(merge);
        parameterAdapters.Clear();
        saved?.Restore(merge);
        saved = null;
        tokens?.Restore(merge);
        tokens = null;
        frozen.Restore();
        layers.Clear();
        if (this is IAdapterTrainingHooks hooks) InjectedTrainingHooks.Unregister(model, hooks);
        model = null;
        OnRestored();
    }

    /// <summary>What the method changed while injecting where PEFT warns and goes on (see <see cref="IPeftAdapter.Warnings"/>); none by default.</summary>
    public virtual IReadOnlyList<string> Warnings => [];

    public abstract JsonObject AdapterConfigJson();

    public virtual (JsonObject Config, IReadOnlyDictionary<string, Tensor> Tensors) SavedForm() => (AdapterConfigJson(), AdapterStateDict());
}
