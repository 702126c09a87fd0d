using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Peft.AdaLora;

/// <summary>
/// AdaLoRA on a whole model (PEFT's AdaLoraModel, huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40,
/// src/peft/tuners/adalora/model.py): wraps the targets in <see cref="SvdLinear"/>, freezes the rest, saves/loads PEFT's
/// keys (<c>base_model.model.&lt;path&gt;.lora_A</c>, <c>.lora_B</c>, <c>.lora_E</c>; ranknum is not saved). In training it
/// adds the orthogonal regulariser to the loss and runs the <see cref="RankAllocator"/> after each optimizer step
/// (<see cref="IAdapterTrainingHooks"/>). Once a rank pattern is known, saving keeps only each layer's kept triplets
/// (resize_state_dict_by_rank_pattern) and writes the pattern; loading a file with one builds each layer at its kept rank
/// (resize_modules_by_rank_pattern). Mergeable.
/// </summary>
public sealed class AdaLoraAdapter : WrappingAdapter<SvdLinear>, IAdapterTrainingHooks
{
    private RankAllocator? allocator;

    public AdaLoraAdapter(AdaLoraConfig config)
    {
        config.Validate("AdaLoRA config");
        Config = config;
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "ADALORA").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new AdaLoraAdapter(AdaLoraConfig.FromJson(json, source));

    /// <summary>
    /// The configuration; after <see cref="WrappingAdapter{TLayer}.Inject"/> with the targets resolved as PEFT saves them,
    /// during training with total_step and the latest rank pattern.
    /// </summary>
    public AdaLoraConfig Config { get; private set; }

    public override string PeftType => AdaLoraConfig.PeftTypeName;

    protected override string MethodName => "AdaLoRA";

    public override JsonObject AdapterConfigJson() => Config.ToJson();

    protected override IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model)
    {
        var targets = Config.TargetModules ?? TargetModules.Names(AdaLoraConfig.DefaultTargetModules(model.Config.ModelType));
        var (selected, resolved) = SelectUntiedTargets(model, targets, Config.ExcludeModules);
        foreach (var (path, module) in selected) BaseLayer.Require(module, "AdaLoRA", path);
        if (Config.RankPattern is { } pattern)
            foreach (var key in pattern.Keys)
                if (!selected.Any(s => s.Path + ".lora_E" == key))
                    throw new ArgumentException($"AdaLoRA: rank_pattern names '{key}', which is not '<target module>.lora_E' for any target module of this model");
        Config = Config with { TargetModules = resolved };
        return selected;
    }

    protected override SvdLinear Wrap(string path, nn.Module<Tensor, Tensor> baseLayer) =>
        Config.RankPattern?.TryGetValue(path + ".lora_E", out var kept) == true
            ? SvdLinear.FromBase(baseLayer, Config, kept.Count(k => k))
            : SvdLinear.FromBase(baseLayer, Config);

    protected override nn.Module<Tensor, Tensor> Fuse(SvdLinear layer) => layer.Fuse();

    // PEFT's _create_new_module sets fan_in_fan_out from the target's kind (true for GPT-2's Conv1D, false for nn.Linear);
    // the saved config says what the layers are, whatever was read.
    protected override void OnInjected(CausalLanguageModel model) =>
        Config = Config with { FanInFanOut = Layers.Any(l => l.Layer.base_layer is Conv1D) };

    protected override IReadOnlyList<string> ModulesToSave => Config.ModulesToSave;

    protected override void OnRestored()
    {
        allocator?.Dispose();
        allocator = null;
    }

    /// <summary>
    /// What PEFT's save writes: the config (with the rank pattern once known) and, for each layer the pattern names, only
    /// its kept triplets (rows of lora_A and lora_E, columns of lora_B), as resize_state_dict_by_rank_pattern; a layer whose
    /// tensors already have the pattern's rank is saved as it is.
    /// </summary>
    public override (JsonObject Config, IReadOnlyDictionary<string, Tensor> Tensors) SavedForm()
    {
        // PEFT's AdaLoraConfig.__post_init__ raises on total_step None, so such a file would not load in PEFT.
        if (Config.TotalStep is null)
            throw new InvalidOperationException(
                "AdaLoRA: total_step is not set, and PEFT refuses to load an adapter_config.json without it: give AdaLoraConfig.TotalStep, " +
                "or save after the trainer has started (it fills total_step with the run's optimizer steps)");
        var state = AdapterStateDict();
        if (Config.RankPattern is not { } pattern) return (AdapterConfigJson(), state);
        var resized = new Dictionary<string, Tensor>(state);
        foreach (var (path, layer) in Layers)
        {
            if (!pattern.TryGetValue(path + ".lora_E", out var kept)) continue;
            var rank = kept.Count(k => k);
            if (rank == layer.Rank) continue;
            if (kept.Count != layer.Rank)
                throw new InvalidOperationException($"AdaLoRA: rank_pattern['{path}.lora_E'] has {kept.Count} entries but the layer has rank {layer.Rank}");
            var index = tensor(kept.Select((k, i) => (k, i)).Where(p => p.k).Select(p => (long)p.i).ToArray(), device: layer.lora_A.device);
            resized[SavedKey(path, "lora_A")] = layer.lora_A.detach().index_select(0, index);
            resized[SavedKey(path, "lora_E")] = layer.lora_E.detach().index_select(0, index);
            resized[SavedKey(path, "lora_B")] = layer.lora_B.detach().index_select(1, index);
        }
        return (AdapterConfigJson(), resized);
    }

    /// <summary>
    /// The orthogonal regulariser PEFT's AdaLoraModel.forward adds to the loss: orth_reg_weight times the mean, over every
    /// lora_A and lora_B, of ‖A·Aᵀ − I‖_F and ‖Bᵀ·B − I‖_F; null when orth_reg_weight is 0 or there is no layer. It
    /// reads only the parameters, never the batch.
    /// </summary>
    public Tensor? RegularizationLoss()
    {
        if (Config.OrthRegWeight == 0 || Layers.Count == 0) return null;
        using var scope = NewDisposeScope();
        Tensor? sum = null;
        foreach (var (_, layer) in Layers)
        {
            foreach (var covariance in new[] { layer.lora_A.matmul(layer.lora_A.t()), layer.lora_B.t().matmul(layer.lora_B) })
            {
                var identity = eye(covariance.size(0), covariance.size(1), dtype: covariance.dtype, device: covariance.device);
                var norm = linalg.matrix_norm(covariance - identity);   // torch.norm(·, p="fro"): gradient 0, not NaN, at 0
                sum = sum is null ? norm : sum + norm;
            }
        }
        return (sum! / (2.0 * Layers.Count) * Config.OrthRegWeight).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Creates the rank allocator for a run of <paramref name="totalSteps"/> steps; total_step is taken from the run when
    /// the config has none (reported in the returned line). Refuses an adapter loaded for inference.
    /// </summary>
    public string? BeginTraining(int totalSteps)
    {
        if (InjectedModel is null) throw new InvalidOperationException("the AdaLoRA adapter is not injected into a model (call Inject first)");
        if (Config.InferenceMode)
            throw new InvalidOperationException("AdaLoRA: an adapter loaded with inference_mode true has no rank allocator and cannot be trained further");
        string? message = null;
        if (Config.TotalStep is null)
        {
            Config = Config with { TotalStep = totalSteps };
            message = $"AdaLoRA: total_step not given; using the run's {totalSteps} optimizer steps";
        }
        allocator?.Dispose();
        allocator = new RankAllocator(Layers, Config);
        return message;
    }

    /// <summary>AdaLoraModel.update_and_allocate(<paramref name="step"/>): see <see cref="RankAllocator.UpdateAndAllocate"/>.</summary>
    public void AfterOptimizerStep(int step)
    {
        var current = allocator ?? throw new InvalidOperationException("AdaLoRA: BeginTraining was not called before the first step");
        Config = Config with { RankPattern = current.UpdateAndAllocate(step, Config.RankPattern) };
    }

    private const string PatternPrefix = "rank_pattern.";

    /// <summary>The allocator's EMAs and the current rank pattern (one uint8 tensor per layer, 1 = kept).</summary>
    public IReadOnlyDictionary<string, Tensor> TrainingState()
    {
        var state = new Dictionary<string, Tensor>(allocator?.State() ?? new Dictionary<string, Tensor>());
        foreach (var (key, kept) in Config.RankPattern ?? new Dictionary<string, IReadOnlyList<bool>>())
            state[PatternPrefix + key] = tensor(kept.Select(k => (byte)(k ? 1 : 0)).ToArray());
        return state;
    }

    public void LoadTrainingState(IReadOnlyDictionary<string, Tensor> state)
    {
        var current = allocator ?? throw new InvalidOperationException("AdaLoRA: BeginTraining was not called before restoring a checkpoint");
        current.LoadState(state);
        var pattern = state.Where(p => p.Key.StartsWith(PatternPrefix, StringComparison.Ordinal))
            .ToDictionary(p => p.Key[PatternPrefix.Length..], p => (IReadOnlyList<bool>)[.. p.Value.to(ScalarType.Byte).cpu().data<byte>().Select(b => b != 0)]);
        Config = Config with { RankPattern = pattern.Count == 0 ? null : pattern };
    }
}
