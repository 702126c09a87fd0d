using System.Text.Json.Nodes;
using SharpTune.Peft.Lora;

namespace SharpTune.Peft.Lycoris;

/// <summary>
/// The settings LoHa and LoKr share, one property per field of PEFT's <c>LycorisConfig</c> and the fields both its
/// subclasses declare (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/lycoris_utils.py,
/// tuners/loha/config.py, tuners/lokr/config.py).
/// </summary>
public abstract record LycorisConfig
{
    /// <summary><c>r</c>: the rank of the factors (PEFT's default 8).</summary>
    public int R { get; init; } = 8;
    /// <summary><c>alpha</c>: ΔW is scaled by alpha / r (PEFT's default 8).</summary>
    public double Alpha { get; init; } = 8;
    /// <summary><c>rank_dropout</c>: in training, each output row of ΔW is dropped with this probability.</summary>
    public double RankDropout { get; init; }
    /// <summary><c>module_dropout</c>: in training, the whole update of a layer is skipped with this probability per forward pass.</summary>
    public double ModuleDropout { get; init; }
    /// <summary><c>target_modules</c>: names, a regex or "all-linear"; null = PEFT's default (the LoRA table's targets).</summary>
    public TargetModules? TargetModules { get; init; }
    /// <summary><c>exclude_modules</c>: modules never wrapped even when <see cref="TargetModules"/> selects them.</summary>
    public TargetModules? ExcludeModules { get; init; }
    /// <summary><c>rank_pattern</c>: module pattern → rank, overriding <see cref="R"/> (PEFT's get_pattern_key).</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = System.Collections.ObjectModel.ReadOnlyDictionary<string, int>.Empty;
    /// <summary><c>alpha_pattern</c>: module pattern → alpha, overriding <see cref="Alpha"/>.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = System.Collections.ObjectModel.ReadOnlyDictionary<string, double>.Empty;
    /// <summary>
    /// <c>use_effective_conv2d</c>: the CP decomposition of convolution kernels. It changes nothing for Linear layers (the
    /// only ones SharpTune wraps), so it is read and written back unchanged.
    /// </summary>
    public bool UseEffectiveConv2d { get; init; }
    /// <summary><c>modules_to_save</c>: modules trained whole and saved with the adapter; empty = none.</summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = [];
    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary><c>inference_mode</c>: true in saved adapters.</summary>
    public bool InferenceMode { get; init; }

    /// <summary>PEFT's <c>peft_type</c> ("LOHA", "LOKR").</summary>
    public abstract string PeftType { get; }

    /// <summary>The method's name in messages ("LoHa", "LoKr").</summary>
    public abstract string MethodName { get; }

    /// <summary>The rank of the module at <paramref name="path"/>: its <see cref="RankPattern"/> entry, else <see cref="R"/>.</summary>
    public int RankFor(string path) => LoraConfig.PatternValue(RankPattern, path, R);

    /// <summary>The alpha of the module at <paramref name="path"/>: its <see cref="AlphaPattern"/> entry, else <see cref="Alpha"/>.</summary>
    public double AlphaFor(string path) => LoraConfig.PatternValue(AlphaPattern, path, Alpha);

    /// <summary>PEFT's TRANSFORMERS_MODELS_TO_LOHA/LOKR_TARGET_MODULES_MAPPING, copies of LoRA's table (see <see cref="PeftConfigFields"/>).</summary>
    public IReadOnlyList<string> DefaultTargetModules(string modelType) => PeftConfigFields.DefaultTargetModules(modelType, MethodName);

    /// <summary>Throws, naming the field, when a value is out of range.</summary>
    public virtual void Validate(string source)
    {
        // PEFT raises for r ≤ 0 only when a layer is built (update_layer); refused here before any model is touched.
        if (R <= 0) throw new ArgumentException($"{source}: r must be a positive integer, found {R}");
        foreach (var (key, rank) in RankPattern)
            if (rank <= 0) throw new ArgumentException($"{source}: rank_pattern['{key}'] must be a positive integer, found {rank}");
        if (RankDropout is < 0 or >= 1) throw new ArgumentException($"{source}: rank_dropout must be in [0, 1), found {RankDropout}");
        if (ModuleDropout is < 0 or >= 1) throw new ArgumentException($"{source}: module_dropout must be in [0, 1), found {ModuleDropout}");
    }

    /// <summary>The fields every LyCORIS config writes; <c>exclude_modules</c> (PEFT 0.14) only when set, as for LoRA.</summary>
    protected JsonObject SharedJson()
    {
        var json = PeftConfigFields.Write(PeftType, new(TargetModules, ModulesToSave, BaseModelNameOrPath, InferenceMode));
        json["alpha"] = LoraConfig.Number(Alpha);
        json["alpha_pattern"] = new JsonObject(AlphaPattern.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)LoraConfig.Number(p.Value))));
        json["module_dropout"] = ModuleDropout;
        json["r"] = R;
        json["rank_dropout"] = RankDropout;
        json["rank_pattern"] = new JsonObject(RankPattern.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)JsonValue.Create(p.Value))));
        json["use_effective_conv2d"] = UseEffectiveConv2d;
        if (ExcludeModules is not null) json["exclude_modules"] = ExcludeModules.ToJson();
        return json;
    }

    /// <summary>The fields <see cref="WithSharedFields"/> reads (with PeftConfig's own); a method adds its own to these.</summary>
    private static readonly IReadOnlyList<string> SharedFields =
    [
        .. PeftConfigFields.Names,
        "r", "alpha", "rank_dropout", "module_dropout", "use_effective_conv2d", "exclude_modules", "init_weights",
        "rank_pattern", "alpha_pattern",
    ];

    /// <summary>The <c>adapter_config.json</c> object, with every field PEFT writes for the method.</summary>
    public abstract JsonObject ToJson();

    /// <summary>
    /// Reads PEFT's <c>adapter_config.json</c> object for the method <typeparamref name="T"/>: refuses fields outside
    /// <see cref="SharedFields"/> and <paramref name="ownFields"/>, reads the shared ones, then the method's own with
    /// <paramref name="readOwnFields"/>, and validates; <paramref name="source"/> names the file in errors.
    /// </summary>
    protected static T Parse<T>(JsonObject json, string source, IEnumerable<string> ownFields, Func<T, JsonObject, T> readOwnFields)
        where T : LycorisConfig, new()
    {
        // Values built in code (not parsed) refuse numeric conversions such as long → double; a reparse makes them uniform.
        json = JsonNode.Parse(json.ToJsonString())!.AsObject();
        var blank = new T();
        AdapterState.RefuseUnknownFields(json, [.. SharedFields, .. ownFields], $"a {blank.MethodName}", source);
        var config = readOwnFields((T)blank.WithSharedFields(json, source), json);
        config.Validate(source);
        return config;
    }

    /// <summary>
    /// This configuration with the shared fields read from PEFT's <c>adapter_config.json</c> object. Refuses
    /// <c>layers_to_transform</c>/<c>layers_pattern</c> (not implemented for LyCORIS methods) and a task other than CAUSAL_LM.
    /// </summary>
    private LycorisConfig WithSharedFields(JsonObject json, string source)
    {
        var common = PeftConfigFields.Read(json, PeftType, source);
        return this with
        {
            R = AdapterState.Read(json, "r", 8, source),
            Alpha = AdapterState.Read(json, "alpha", 8.0, source),
            RankDropout = AdapterState.Read(json, "rank_dropout", 0.0, source),
            ModuleDropout = AdapterState.Read(json, "module_dropout", 0.0, source),
            UseEffectiveConv2d = AdapterState.Read(json, "use_effective_conv2d", false, source),
            TargetModules = common.TargetModules,
            ExcludeModules = AdapterState.ReadModuleSelection(json["exclude_modules"], "exclude_modules", source),
            RankPattern = LoraConfig.ReadPattern(json["rank_pattern"], "rank_pattern", source, v => v.GetValue<int>()),
            AlphaPattern = LoraConfig.ReadPattern(json["alpha_pattern"], "alpha_pattern", source, v => v.GetValue<double>()),
            ModulesToSave = common.ModulesToSave,
            BaseModelNameOrPath = common.BaseModelNameOrPath,
            InferenceMode = common.InferenceMode,
        };
    }
}
