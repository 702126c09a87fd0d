using System.Text.Json.Nodes;
using SharpTune.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Peft.Vera;

/// <summary>
/// VeRA on a whole model (PEFT's VeraModel, huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40,
/// tuners/vera/model.py): one pair of frozen random projections sized for the largest target, and per target layer two
/// trained vectors (<see cref="VeraLinear"/>). Saved in PEFT's layout: <c>base_model.model.&lt;path&gt;.vera_lambda_b</c>
/// and <c>…vera_lambda_d</c>, plus <c>base_model.vera_A</c> / <c>base_model.vera_B</c> when <c>save_projection</c>
/// (otherwise drawn again from <c>projection_prng_key</c> on load). Mergeable.
/// </summary>
public sealed class VeraAdapter : WrappingAdapter<VeraLinear>
{
    /// <summary>PEFT's saved key of vera_A (the model-level BufferDict entry, adapter name removed).</summary>
    public const string ProjectionAKey = "base_model.vera_A";
    /// <summary>PEFT's saved key of vera_B.</summary>
    public const string ProjectionBKey = "base_model.vera_B";

    private TargetModules? savedTargets;
    private VeraProjections? projections;
    private IReadOnlyList<(string Path, nn.Module Module)>? selectedTargets;

    public VeraAdapter(VeraConfig config)
    {
        config.Validate();
        Config = config;
        if (!config.SaveProjection) warnings.Add(NoSavedProjectionsWarning);   // PEFT's VeraConfig.__post_init__
    }

    /// <summary>Builds an adapter from a parsed <c>adapter_config.json</c> (the registration entry for "VERA").</summary>
    public static IPeftAdapter FromConfigJson(JsonObject json, string source) => new VeraAdapter(VeraConfig.FromJson(json, source));

    /// <summary>The configuration; after <see cref="WrappingAdapter{TLayer}.Inject"/>, with the targets resolved as PEFT saves them.</summary>
    public VeraConfig Config { get; private set; }

    /// <summary>The shared projections while injected, else null.</summary>
    public VeraProjections? Projections => projections;

    public override string PeftType => VeraConfig.PeftTypeName;

    protected override string MethodName => "VeRA";

    public override JsonObject AdapterConfigJson() => Config.ToJson();

    protected override IReadOnlyList<string> ModulesToSave => Config.ModulesToSave;

    protected override IReadOnlyList<(string Path, nn.Module Module)> SelectTargets(CausalLanguageModel model)
    {
        Config.Validate();
        var targets = Config.TargetModules ?? TargetModules.Names(VeraConfig.DefaultTargetModules(model.Config.ModelType));
        (var selected, savedTargets) = SelectUntiedTargets(model, targets, exclude: null);
        // A target PEFT cannot wrap fails in _create_new_module; checked before anything is drawn.
        foreach (var (path, module) in selected) BaseLayer.Require(module, "VeRA", path);
        // The projections are drawn when the first layer is wrapped, once every check above and Inject's own have passed.
        projections?.Dispose();
        projections = null;
        selectedTargets = selected;
        return selected;
    }

    protected override VeraLinear Wrap(string path, nn.Module<Tensor, Tensor> baseLayer)
    {
        projections ??= Draw(Config, selectedTargets!, BaseLayer.DeviceOf(selectedTargets![0].Module));
        return VeraLinear.FromBase(baseLayer, projections, Config);
    }

    /// <summary>
    /// The projections an adapter with <paramref name="config"/> draws for <paramref name="model"/>, on the CPU, without
    /// wrapping anything: the model may be built on the "meta" device (shapes and dtypes, no weights), so a saved
    /// checkpoint's projections are drawn without loading the base.
    /// </summary>
    internal static VeraProjections ProjectionsFor(CausalLanguageModel model, VeraConfig config)
    {
        var adapter = new VeraAdapter(config);
        return Draw(config, adapter.SelectTargets(model), CPU);
    }

    /// <summary>
    /// PEFT's <c>_find_dim</c> (the largest (out, in) over the targets, dimension by dimension) and <c>_init_vera_A_vera_B</c>,
    /// then the rounding PEFT's wrapping leaves: each layer's <c>update_layer</c> casts the shared vera_A/vera_B to that
    /// layer's dtype (<c>_move_adapter_to_device_of_base_layer</c>), in wrapping order, and <c>cast_adapter_dtype</c> upcasts
    /// them to fp32 afterwards (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/vera/layer.py,
    /// tuners/tuners_utils.py): on a bf16 base the projections are the fp32 draw rounded to bf16.
    /// </summary>
    private static VeraProjections Draw(VeraConfig config, IReadOnlyList<(string Path, nn.Module Module)> selected, Device device)
    {
        long maxIn = 0, maxOut = 0;
        foreach (var (_, module) in selected)
        {
            var (inFeatures, outFeatures) = BaseLayer.Shape(module);
            maxIn = Math.Max(maxIn, inFeatures);
            maxOut = Math.Max(maxOut, outFeatures);
        }
        var projections = VeraProjections.Create(config.R, maxIn, maxOut, config.ProjectionPrngKey);
        foreach (var (_, module) in selected)
            if (BaseLayer.AdapterDtype(module) is { } dtype) projections.RoundThrough(dtype);
        projections.MoveTo(device);
        return projections;
    }

    // "all-linear" expanded, as PEFT saves it; fan_in_fan_out as PEFT sets it for Conv1D targets.
    protected override void OnInjected(CausalLanguageModel model)
    {
        Config = Config with
        {
            TargetModules = savedTargets,
            FanInFanOut = Layers.Any(l => l.Layer.FanInFanOut),
        };
        selectedTargets = null;   // the modules are wrapped now; only the projections are kept
    }

    protected override nn.Module<Tensor, Tensor> Fuse(VeraLinear layer) => layer.Fuse();

    protected override IEnumerable<(string Key, Tensor Tensor)> SharedState()
    {
        if (!Config.SaveProjection || projections is null) yield break;
        if (Layers.Count > 0) projections.MoveTo(Layers[0].Layer.vera_lambda_d.device);   // beside the vectors, if the model moved
        yield return (ProjectionAKey, projections.A);
        yield return (ProjectionBKey, projections.B);
    }

    /// <summary>
    /// PEFT's <c>_remap_adapter_state_dict_for_load</c>: with save_projection the file must hold the projections (they
    /// replace the drawn ones). Without it, as PEFT, projections found in the file are ignored (the drawn ones are kept)
    /// with PEFT's warning (their absence was warned about when the adapter was created).
    /// </summary>
    protected override IReadOnlyDictionary<string, Tensor> BeforeLoad(Dictionary<string, Tensor> state)
    {
        if (Config.SaveProjection)
        {
            if (!state.ContainsKey(ProjectionAKey) || !state.ContainsKey(ProjectionBKey))
                throw new InvalidDataException(
                    "Specified to load vera_A and vera_B from state dictionary however they were not present! (save_projection is " +
                    $"true in the config but '{ProjectionAKey}'/'{ProjectionBKey}' are missing; set save_projection to false to draw " +
                    "them from projection_prng_key)");
            return state;
        }
        if (state.ContainsKey(ProjectionAKey) || state.ContainsKey(ProjectionBKey))
        {
            // Not loaded: PEFT's load_state_dict(strict=False) leaves them as unexpected keys.
            state.Remove(ProjectionAKey);
            state.Remove(ProjectionBKey);
            warnings.Add("VeRA: save_projection is false, so the file's vera_A and vera_B are ignored and the projections are " +
                         $"drawn from projection_prng_key {Config.ProjectionPrngKey} (PEFT: \"Specified to not load vera_A and vera_B from " +
                         "state dictionary however they are present in state dictionary!\"); set save_projection to true to use the saved ones");
        }
        return state;
    }

    /// <summary>PEFT's warning for save_projection false (VeraConfig.__post_init__, _remap_adapter_state_dict_for_load).</summary>
    internal const string NoSavedProjectionsWarning =
        "VeRA: save_projection is false, so vera_A and vera_B are not saved with the adapter but drawn again from " +
        "projection_prng_key, which may not give the same numbers on every system; set save_projection to true to save them";

    private readonly List<string> warnings = [];

    /// <summary>PEFT's warnings about save_projection false, given when the adapter is made and when it is loaded.</summary>
    public override IReadOnlyList<string> Warnings => warnings;

    protected override void OnRestored()
    {
        projections?.Dispose();
        projections = null;
        selectedTargets = null;
    }
}
