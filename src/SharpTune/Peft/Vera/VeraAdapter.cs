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

    public VeraAdapter(VeraConfig config)
    {
        config.Validate();
        Config = config;
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
        // PEFT's _find_dim: the largest (out, in) over the targets, dimension by dimension; a target it cannot wrap fails
        // in _create_new_module with this message.
        long maxIn = 0, maxOut = 0;
        foreach (var (path, module) in selected)
        {
            if (!BaseLayer.IsSupported(module))
                throw new NotSupportedException(
                    $"VeRA: target module '{path}' ({module.GetType().Name}) is not supported. Currently, only Linear (optionally " +
                    "quantized) and Conv1D are supported");
            var (inFeatures, outFeatures) = BaseLayer.Shape(module);
            maxIn = Math.Max(maxIn, inFeatures);
            maxOut = Math.Max(maxOut, outFeatures);
        }
        projections?.Dispose();
        projections = VeraProjections.Create(Config.R, maxIn, maxOut, Config.ProjectionPrngKey, BaseLayer.DeviceOf(selected[0].Module));
        return selected;
    }

    protected override VeraLinear Wrap(string path, nn.Module<Tensor, Tensor> baseLayer) =>
        VeraLinear.FromBase(baseLayer, projections!, Config);

    // "all-linear" expanded, as PEFT saves it; fan_in_fan_out as PEFT sets it for Conv1D targets.
    protected override void OnInjected(CausalLanguageModel model) => Config = Config with
    {
        TargetModules = savedTargets,
        FanInFanOut = Layers.Any(l => l.Layer.FanInFanOut),
    };

    protected override nn.Module<Tensor, Tensor> Fuse(VeraLinear layer) => layer.Fuse();

    protected override IEnumerable<(string Key, Tensor Tensor)> SharedState()
    {
        if (!Config.SaveProjection || projections is null) yield break;
        yield return (ProjectionAKey, projections.A);
        yield return (ProjectionBKey, projections.B);
    }

    /// <summary>
    /// PEFT's <c>_remap_adapter_state_dict_for_load</c>: with save_projection the file must hold the projections (they
    /// replace the drawn ones). Without it PEFT ignores projections found in the file and keeps the drawn ones; here
    /// such projections are accepted only when they are the drawn ones bit for bit, since otherwise the file describes a
    /// different model than the one computed.
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
        foreach (var (key, drawn) in new[] { (ProjectionAKey, projections!.A), (ProjectionBKey, projections.B) })
        {
            if (!state.Remove(key, out var saved)) continue;
            using var scope = NewDisposeScope();
            if (!saved.shape.SequenceEqual(drawn.shape) || !saved.to(drawn.dtype, drawn.device).eq(drawn).all().item<bool>())
                throw new InvalidDataException(
                    $"save_projection is false, so the projections are drawn from projection_prng_key {Config.ProjectionPrngKey}, but the " +
                    $"file holds a different '{key}'; set save_projection to true to load the saved projections");
        }
        return state;
    }

    protected override void OnRestored()
    {
        projections?.Dispose();
        projections = null;
    }
}
