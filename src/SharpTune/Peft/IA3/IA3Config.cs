using System.Text.Json.Nodes;

namespace SharpTune.Peft.IA3;

/// <summary>
/// (IA)³'s settings (Liu et al. 2022), one property per field of PEFT's <c>IA3Config</c> JSON.
/// </summary>
public sealed record IA3Config
{
    public const string PeftTypeName = "IA3";

    /// <summary><c>target_modules</c>: layers whose output (or, for feed-forward ones, input) is rescaled; null = PEFT's default.</summary>
    public TargetModules? TargetModules { get; init; }
    /// <summary><c>feedforward_modules</c>: the targets scaled on their input (the MLP's intermediate activations); null = PEFT's default.</summary>
    public TargetModules? FeedforwardModules { get; init; }
    /// <summary><c>exclude_modules</c>: modules never wrapped even when <see cref="TargetModules"/> selects them (a list of names or a regex).</summary>
    public TargetModules? ExcludeModules { get; init; }
    /// <summary>
    /// <c>fan_in_fan_out</c>: the targets store weights (in, out), as GPT-2's Conv1D. Changes nothing computed: PEFT
    /// overrides it per layer (false for Linear, true for Conv1D, with a warning), as Inject does when it records it.
    /// </summary>
    public bool FanInFanOut { get; init; }
    /// <summary><c>init_ia3_weights</c>: start the vectors at one (true) or random (false; for tests).</summary>
    public bool InitIA3Weights { get; init; } = true;
    /// <summary>
    /// <c>modules_to_save</c>: modules trained whole and saved with the adapter (e.g. an untied <c>lm_head</c>); empty =
    /// none. See <see cref="SavedModules"/>. The token embedding of a model with a tied head is refused when injected:
    /// PEFT's IA3 has no <c>ensure_weight_tying</c>, so its head keeps the base weights while the embedding trains.
    /// </summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = [];
    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary><c>inference_mode</c>: true in saved adapters.</summary>
    public bool InferenceMode { get; init; }

    /// <summary>
    /// PEFT's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING (Llama/Mistral scale k and v, Gemma/Qwen q and v);
    /// Phi-3 (fused qkv_proj), SmolLM3, Granite, OLMo 2 and OLMo 3 are not in PEFT's table and get the equivalent of their
    /// family (Llama's for the last four); StableLM is not either, and, as in PEFT, needs target_modules. Mixtral scales k, v and its experts' down projection <c>w2</c>
    /// (huggingface/peft@00073fe src/peft/utils/constants.py).
    /// </summary>
    public static IReadOnlyList<string> DefaultTargetModules(string modelType) => modelType switch
    {
        "llama" or "mistral" or "smollm3" or "granite" or "olmo2" or "olmo3" => ["k_proj", "v_proj", "down_proj"],
        "qwen2" or "qwen3" or "gemma" or "gemma2" or "gemma3_text" => ["q_proj", "v_proj", "down_proj"],
        "phi3" => ["qkv_proj", "down_proj"],
        "mixtral" => ["k_proj", "v_proj", "w2"],
        "gpt2" => ["c_attn", "mlp.c_proj"],
        "gpt_neox" => ["query_key_value", "dense_4h_to_h"],
        "phi" => ["q_proj", "v_proj", "fc2"],
        _ => throw new ArgumentException(
            $"no default IA3 target modules for model_type '{modelType}': give target_modules and feedforward_modules"),
    };

    /// <summary>PEFT's TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.</summary>
    public static IReadOnlyList<string> DefaultFeedforwardModules(string modelType) => modelType switch
    {
        "llama" or "mistral" or "qwen2" or "qwen3" or "gemma" or "gemma2" or "gemma3_text" or "phi3" or "smollm3" or "granite" or "olmo2" or "olmo3"
            => ["down_proj"],
        "mixtral" => ["w2"],
        "gpt2" => ["mlp.c_proj"],
        "gpt_neox" => ["dense_4h_to_h"],
        "phi" => ["fc2"],
        _ => throw new ArgumentException(
            $"no default IA3 feedforward modules for model_type '{modelType}': give target_modules and feedforward_modules"),
    };

    /// <summary>
    /// The <c>adapter_config.json</c> object, with every field PEFT writes for IA3; <c>exclude_modules</c> (PEFT 0.14)
    /// only when set, since PEFT before 0.14 refuses keys it does not know.
    /// </summary>
    public JsonObject ToJson()
    {
        var json = FieldsEveryPeftReads();
        if (ExcludeModules is not null) json["exclude_modules"] = ExcludeModules.ToJson();
        return json;
    }

    private JsonObject FieldsEveryPeftReads() => new()
    {
        ["auto_mapping"] = null,
        ["base_model_name_or_path"] = BaseModelNameOrPath,
        ["fan_in_fan_out"] = FanInFanOut,
        ["feedforward_modules"] = FeedforwardModules?.ToJson(),
        ["inference_mode"] = InferenceMode,
        ["init_ia3_weights"] = InitIA3Weights,
        ["modules_to_save"] = ModulesToSave.Count == 0 ? null : new JsonArray([.. ModulesToSave.Select(m => JsonValue.Create(m))]),
        ["peft_type"] = PeftTypeName,
        ["revision"] = null,
        ["target_modules"] = TargetModules?.ToJson(),
        ["task_type"] = "CAUSAL_LM",
    };

    // PEFT's IA3Config fields: the ones every PeftConfig has and IA3's own.
    private static readonly HashSet<string> KnownFields =
    [
        .. AdapterState.PeftConfigFields,
        "target_modules", "exclude_modules", "feedforward_modules", "fan_in_fan_out", "modules_to_save", "init_ia3_weights",
    ];

    /// <summary>Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static IA3Config FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        AdapterState.RequireType(json, PeftTypeName, source);
        AdapterState.RefuseUnknownFields(json, KnownFields, "an IA3", source);
        var config = new IA3Config
        {
            TargetModules = json["target_modules"] is { } targets ? Peft.TargetModules.FromJson(targets, source) : null,
            ExcludeModules = AdapterState.ReadModuleSelection(json["exclude_modules"], "exclude_modules", source),
            // A string is a regex here even when it reads "all-linear": PEFT expands that for target_modules only.
            FeedforwardModules = AdapterState.ReadModuleSelection(json["feedforward_modules"], "feedforward_modules", source),
            ModulesToSave = AdapterState.ReadNames(json["modules_to_save"], "modules_to_save", source),
            FanInFanOut = AdapterState.Read(json, "fan_in_fan_out", false, source),
            InitIA3Weights = AdapterState.Read(json, "init_ia3_weights", true, source),
            BaseModelNameOrPath = AdapterState.Read<string?>(json, "base_model_name_or_path", null, source),
            InferenceMode = AdapterState.Read(json, "inference_mode", false, source),
        };
        config.Validate(source);
        return config;
    }

    /// <summary>
    /// Throws as PEFT's IA3Config.__post_init__ does when both <see cref="FeedforwardModules"/> and
    /// <see cref="TargetModules"/> are lists of names and the first is not a subset of the second.
    /// </summary>
    public void Validate(string source = "IA3 config")
    {
        if (FeedforwardModules?.ListedNames is { } ff && TargetModules?.ListedNames is { } targets
            && ff.Except(targets).ToList() is { Count: > 0 } extra)
            throw new ArgumentException(
                $"{source}: feedforward_modules must be a subset of target_modules; not in target_modules: {string.Join(", ", extra)}");
    }
}
