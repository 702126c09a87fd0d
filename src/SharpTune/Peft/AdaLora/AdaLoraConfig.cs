using System.Text.Json.Nodes;

namespace SharpTune.Peft.AdaLora;

/// <summary>
/// AdaLoRA's settings (Zhang et al. 2023, "Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning"), one property
/// per field of PEFT's <c>AdaLoraConfig</c> JSON (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40,
/// src/peft/tuners/adalora/config.py; it extends LoraConfig, whose fields it writes too). Training has three phases:
/// <see cref="Tinit"/> steps at the initial budget, a cubic decrease of the budget until step
/// <see cref="TotalStep"/> − <see cref="Tfinal"/>, then <see cref="Tfinal"/> steps at the fixed <see cref="RankPattern"/>.
/// </summary>
public sealed record AdaLoraConfig
{
    public const string PeftTypeName = "ADALORA";

    /// <summary><c>target_r</c>: the average rank per layer the budget ends at (PEFT's default 8).</summary>
    public int TargetR { get; init; } = 8;
    /// <summary><c>init_r</c>: every layer's rank before any is pruned (PEFT's default 12).</summary>
    public int InitR { get; init; } = 12;
    /// <summary><c>tinit</c>: the first steps, at the initial budget (PEFT's default 0).</summary>
    public int Tinit { get; init; }
    /// <summary><c>tfinal</c>: the last steps, at the final rank pattern (PEFT's default 0).</summary>
    public int Tfinal { get; init; }
    /// <summary><c>deltaT</c>: the steps between two budget allocations in the decreasing phase (PEFT's default 1).</summary>
    public int DeltaT { get; init; } = 1;
    /// <summary><c>beta1</c>: the EMA coefficient of the sensitivity (PEFT's default 0.85); in (0, 1).</summary>
    public double Beta1 { get; init; } = 0.85;
    /// <summary><c>beta2</c>: the EMA coefficient of the uncertainty (PEFT's default 0.85); in (0, 1).</summary>
    public double Beta2 { get; init; } = 0.85;
    /// <summary><c>orth_reg_weight</c>: the weight of the orthogonal regulariser added to the loss (PEFT's default 0.5).</summary>
    public double OrthRegWeight { get; init; } = 0.5;
    /// <summary>
    /// <c>total_step</c>: the training's optimizer steps, which the budget schedule reads. PEFT requires it; SharpTune's
    /// trainer fills it with the run's total steps when null, before the first step.
    /// </summary>
    public int? TotalStep { get; init; }
    /// <summary>
    /// <c>rank_pattern</c>: per layer ("&lt;module path&gt;.lora_E"), which of its <see cref="InitR"/> triplets the
    /// allocator kept; null until the first allocation. A saved adapter keeps only those (PEFT's resize_state_dict_by_rank_pattern).
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<bool>>? RankPattern { get; init; }
    /// <summary><c>lora_alpha</c>: the scaling numerator; the update is scaled by lora_alpha / ranknum (PEFT's default 8; 0 = init_r).</summary>
    public double LoraAlpha { get; init; } = 8;
    /// <summary><c>lora_dropout</c>: dropout on the update's input (PEFT's default 0).</summary>
    public double LoraDropout { get; init; }
    /// <summary><c>target_modules</c>: names, a regex or "all-linear"; null = PEFT's AdaLoRA table (<see cref="DefaultTargetModules"/>).</summary>
    public TargetModules? TargetModules { get; init; }
    /// <summary><c>exclude_modules</c>: modules never wrapped even when <see cref="TargetModules"/> selects them.</summary>
    public TargetModules? ExcludeModules { get; init; }
    /// <summary><c>init_lora_weights</c>: true = lora_E zeros, lora_A and lora_B normal(0, 0.02) (the model starts as the base); false = normal(0, 1) throughout (for tests).</summary>
    public bool InitLoraWeights { get; init; } = true;
    /// <summary><c>modules_to_save</c>: modules trained whole and saved with the adapter; empty = none.</summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = [];
    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary><c>inference_mode</c>: true in saved adapters; such an adapter has no rank allocator.</summary>
    public bool InferenceMode { get; init; }
    /// <summary>
    /// <c>fan_in_fan_out</c>: whether the wrapped layers store their weight (in, out), as GPT-2's Conv1D does. PEFT's
    /// AdaLoraModel._create_new_module sets it from the target's kind (true for Conv1D), so a read value is not used: the
    /// adapter sets it when injected, true when any wrapped base layer is a Conv1D.
    /// </summary>
    public bool FanInFanOut { get; init; }

    /// <summary>
    /// PEFT's TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING (utils/constants.py at the commit above), for the model
    /// types SharpTune loads; unlike LoHa's or VeRA's it is its own table, not a copy of LoRA's.
    /// </summary>
    public static IReadOnlyList<string> DefaultTargetModules(string modelType) => modelType switch
    {
        "llama" or "llama4" or "gemma" or "gemma2" or "gemma3_text" or "qwen2" or "qwen3" => ["q_proj", "v_proj"],
        "gpt2" => ["c_attn"],
        _ => throw new ArgumentException(
            $"no default AdaLoRA target modules for model_type '{modelType}' (PEFT's AdaLoRA table has none): give target_modules (names, a regex or \"all-linear\")"),
    };

    /// <summary>
    /// The scaling numerator PEFT's update_layer sets for a layer of <paramref name="rank"/>: lora_alpha, or the rank when
    /// lora_alpha is not positive (init_r for a new layer, the kept rank for one rebuilt from a rank pattern).
    /// </summary>
    public double ScalingFor(int rank) => LoraAlpha > 0 ? LoraAlpha : rank;

    /// <summary>Throws, naming the field, for what PEFT's AdaLoraConfig.__post_init__ and RankAllocator refuse (with its messages).</summary>
    public void Validate(string source)
    {
        if (InitR < 0) throw new ArgumentException($"{source}: `r` should be a positive integer or 0, but the value passed is {InitR} (init_r)");
        if (TargetR < 0) throw new ArgumentException($"{source}: target_r must be 0 or positive, found {TargetR}");
        if (LoraDropout is < 0 or >= 1) throw new ArgumentException($"{source}: lora_dropout must be in [0, 1), found {LoraDropout}");
        if (OrthRegWeight < 0)
            throw new ArgumentException($"{source}: `orth_reg_weight` should be greater than or equal to 0, but the value passed is {OrthRegWeight}");
        if (TotalStep is { } total) ValidateSchedule(source, total);
        if (InferenceMode) return;   // a saved adapter is loaded as written; the allocator's settings are for training
        if (Beta1 is <= 0 or >= 1) throw new ArgumentException($"{source}: beta1 must be in (0, 1) (PEFT's RankAllocator asserts it), found {Beta1}");
        if (Beta2 is <= 0 or >= 1) throw new ArgumentException($"{source}: beta2 must be in (0, 1) (PEFT's RankAllocator asserts it), found {Beta2}");
        if (DeltaT <= 0) throw new ArgumentException($"{source}: deltaT must be a positive number of steps, found {DeltaT}");
        if (Tinit < 0 || Tfinal < 0) throw new ArgumentException($"{source}: tinit and tfinal must be 0 or positive, found {Tinit} and {Tfinal}");
        // PEFT's mask_to_budget calls torch.kthvalue(k = init budget − budget), which fails for k = 0: at the final allocation
        // that is init_r = target_r, so PEFT cannot train that setting either.
        if (TargetR >= InitR)
            throw new ArgumentException($"{source}: target_r ({TargetR}) must be below init_r ({InitR}): the allocator prunes init_r − target_r triplets per layer on average");
    }

    /// <summary>PEFT's checks of total_step against tinit and tfinal (also run once the trainer fills total_step in).</summary>
    public void ValidateSchedule(string source, int totalStep)
    {
        if (totalStep <= 0) throw new ArgumentException($"{source}: AdaLoRA does not work when `total_step` is None, supply a value > 0 (found {totalStep}).");
        if (Tinit >= totalStep - Tfinal)
            throw new ArgumentException(
                $"{source}: The supplied schedule values don't allow for a budgeting phase. Decrease `tfinal`/`tinit` or increase `total_step` " +
                $"(tinit {Tinit}, tfinal {Tfinal}, total_step {totalStep}: tinit must be below total_step - tfinal).");
    }

    /// <summary>The <c>adapter_config.json</c> object, with every field PEFT's AdaLoraConfig writes (LoraConfig's included).</summary>
    public JsonObject ToJson()
    {
        var json = PeftConfigFields.Write(PeftTypeName, new(TargetModules, ModulesToSave, BaseModelNameOrPath, InferenceMode));
        // LoraConfig's fields, at the values AdaLoRA uses (r is not read: init_r is the rank).
        json["alpha_pattern"] = new JsonObject();
        json["bias"] = "none";
        json["fan_in_fan_out"] = FanInFanOut;
        json["init_lora_weights"] = InitLoraWeights;
        json["lora_alpha"] = LoraAlpha;
        json["lora_dropout"] = LoraDropout;
        json["r"] = 8;
        json["use_dora"] = false;
        json["use_rslora"] = false;
        // AdaLoraConfig's own.
        json["beta1"] = Beta1;
        json["beta2"] = Beta2;
        json["deltaT"] = DeltaT;
        json["init_r"] = InitR;
        json["orth_reg_weight"] = OrthRegWeight;
        json["rank_pattern"] = RankPattern is null ? null
            : new JsonObject(RankPattern.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)new JsonArray([.. p.Value.Select(b => JsonValue.Create(b))]))));
        json["target_r"] = TargetR;
        json["tfinal"] = Tfinal;
        json["tinit"] = Tinit;
        json["total_step"] = TotalStep;
        if (ExcludeModules is not null) json["exclude_modules"] = ExcludeModules.ToJson();
        return json;
    }

    // PEFT's AdaLoraConfig fields: PeftConfig's, LoraConfig's that AdaLoRA reads or writes at their defaults, and its own.
    private static readonly HashSet<string> KnownFields =
    [
        .. PeftConfigFields.Names,
        "r", "lora_alpha", "lora_dropout", "fan_in_fan_out", "bias", "use_rslora", "use_dora", "init_lora_weights", "alpha_pattern",
        "exclude_modules", "lora_bias", "loftq_config", "megatron_config", "megatron_core", "layer_replication", "corda_config",
        "eva_config", "use_qalora", "qalora_group_size", "target_parameters", "ensure_weight_tying", "arrow_config",
        "target_r", "init_r", "tinit", "tfinal", "deltaT", "beta1", "beta2", "orth_reg_weight", "total_step", "rank_pattern",
    ];

    /// <summary>
    /// Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors. Refuses what
    /// PEFT refuses for AdaLoRA (use_dora, loftq_config) and what SharpTune does not implement (a bias other than "none",
    /// alpha_pattern, layers_to_transform, rsLoRA). fan_in_fan_out is accepted whatever its value, as PEFT sets it per target.
    /// </summary>
    public static AdaLoraConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        json = JsonNode.Parse(json.ToJsonString())!.AsObject();
        AdapterState.RequireType(json, PeftTypeName, source);
        AdapterState.RefuseUnknownFields(json, KnownFields, "an AdaLoRA", source);
        if (AdapterState.IsSet(json["use_dora"])) throw new ArgumentException($"{source}: ADALORA does not support DoRA.");
        if (AdapterState.IsSet(json["loftq_config"])) throw new ArgumentException($"{source}: ADALORA does not support LOFTQ.");
        AdapterState.RefuseFields(json, ["use_rslora", "alpha_pattern", "lora_bias", "layer_replication", "megatron_config",
            "corda_config", "eva_config", "use_qalora", "target_parameters", "arrow_config"], source);
        var common = PeftConfigFields.Read(json, PeftTypeName, source);
        var bias = AdapterState.Read(json, "bias", "none", source);
        if (bias != "none")
            throw new NotSupportedException($"{source}: bias '{bias}' trains the base layers' biases, which SharpTune's AdaLoRA does not: use \"none\"");
        var config = new AdaLoraConfig
        {
            TargetR = AdapterState.Read(json, "target_r", 8, source),
            InitR = AdapterState.Read(json, "init_r", 12, source),
            Tinit = AdapterState.Read(json, "tinit", 0, source),
            Tfinal = AdapterState.Read(json, "tfinal", 0, source),
            DeltaT = AdapterState.Read(json, "deltaT", 1, source),
            Beta1 = AdapterState.Read(json, "beta1", 0.85, source),
            Beta2 = AdapterState.Read(json, "beta2", 0.85, source),
            OrthRegWeight = AdapterState.Read(json, "orth_reg_weight", 0.5, source),
            TotalStep = AdapterState.Read<int?>(json, "total_step", null, source),
            RankPattern = ReadRankPattern(json["rank_pattern"], source),
            LoraAlpha = AdapterState.Read(json, "lora_alpha", 8.0, source),
            LoraDropout = AdapterState.Read(json, "lora_dropout", 0.0, source),
            TargetModules = common.TargetModules,
            ExcludeModules = AdapterState.ReadModuleSelection(json["exclude_modules"], "exclude_modules", source),
            InitLoraWeights = AdapterState.Read(json, "init_lora_weights", true, source),
            ModulesToSave = common.ModulesToSave,
            BaseModelNameOrPath = common.BaseModelNameOrPath,
            InferenceMode = common.InferenceMode,
            FanInFanOut = AdapterState.Read(json, "fan_in_fan_out", false, source),   // replaced from the layers' kinds on injection
        };
        config.Validate(source);
        return config;
    }

    // rank_pattern as PEFT writes it: {"<path>.lora_E": [true, false, …]} (bools from RankAllocator.mask_to_budget).
    private static IReadOnlyDictionary<string, IReadOnlyList<bool>>? ReadRankPattern(JsonNode? node, string source)
    {
        if (node is null) return null;
        if (node is not JsonObject pattern)
            throw new InvalidDataException($"{source}: rank_pattern must be an object of module names to lists of booleans, found {node.ToJsonString()}");
        var result = new Dictionary<string, IReadOnlyList<bool>>();
        foreach (var (key, value) in pattern)
        {
            if (value is not JsonArray list || !list.All(v => v is JsonValue b && b.TryGetValue<bool>(out _)))
                throw new InvalidDataException($"{source}: rank_pattern['{key}'] must be a list of booleans (the kept triplets), found {value?.ToJsonString() ?? "null"}");
            result[key] = [.. list.Select(v => v!.GetValue<bool>())];
        }
        return result;
    }
}
