using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SharpTune.Peft.Lora;

/// <summary>How LoRA's matrices start: PEFT's <c>init_lora_weights</c>.</summary>
public enum LoraInit
{
    /// <summary><c>true</c>: A Kaiming-uniform, B zero, so the model starts unchanged.</summary>
    Default,
    /// <summary><c>"gaussian"</c>: A normal with std 1/r, B zero.</summary>
    Gaussian,
    /// <summary><c>false</c>: both random (the adapter changes the model from the start; for tests).</summary>
    Random,
    /// <summary>
    /// <c>"orthogonal"</c>: A and B built from alternate rows of one random orthogonal r×r matrix, so BA = 0 while both
    /// are non-zero (needs an even rank).
    /// </summary>
    Orthogonal,
    /// <summary>
    /// <c>"pissa"</c> (Meng et al. 2024): A and B from the top r singular triplets of the base weight W (exact SVD), the
    /// base keeping the residual W − s·BA. Saved adapters are converted to an ordinary rank-2r LoRA for the original base.
    /// </summary>
    Pissa,
    /// <summary>
    /// <c>"olora"</c> (Büyükakyüz 2024): A = R[:r], B = Q[:, :r] from the QR decomposition of the base weight W, the base
    /// keeping W − s·BA. Saved adapters are converted as for <see cref="Pissa"/>.
    /// </summary>
    Olora,
    /// <summary>
    /// <c>"loftq"</c> (Li et al. 2023) on a quantized base (QLoRA), as PEFT's <c>replace_lora_weights_loftq</c> applies it:
    /// BA starts as the best rank-r approximation of each quantized layer's quantization error W − dequant(Q(W)), read
    /// from the full-precision checkpoint; the quantized base is left as it is, so saved adapters are ordinary LoRA
    /// (init_lora_weights true, as PEFT's LoftQ example saves them). Layers that are not quantized start as <see cref="Default"/>.
    /// </summary>
    Loftq,
}

/// <summary>
/// LoRA's settings, one property per field of PEFT's <c>LoraConfig</c> JSON (<c>adapter_config.json</c>).
/// </summary>
public sealed record LoraConfig
{
    /// <summary><c>r</c>: the rank of the update BA.</summary>
    public int R { get; init; } = 8;
    /// <summary><c>lora_alpha</c>: the update is scaled by alpha / r (alpha / √r with rsLoRA).</summary>
    public double LoraAlpha { get; init; } = 8;
    /// <summary><c>lora_dropout</c>: dropout on the adapter's input during training.</summary>
    public double LoraDropout { get; init; }
    /// <summary><c>target_modules</c>; null picks PEFT's default for the model type.</summary>
    public TargetModules? TargetModules { get; init; }
    /// <summary><c>use_rslora</c>: scale by alpha / √r (Kalajdzievski 2023).</summary>
    public bool UseRsLora { get; init; }
    /// <summary><c>use_dora</c>: weight-decomposed LoRA (Liu et al. 2024).</summary>
    public bool UseDora { get; init; }
    /// <summary><c>bias</c>: only "none" (biases stay frozen) is supported.</summary>
    public string Bias { get; init; } = "none";
    /// <summary><c>fan_in_fan_out</c>: the target stores its weight (in, out), as GPT-2's Conv1D does.</summary>
    public bool FanInFanOut { get; init; }
    /// <summary><c>init_lora_weights</c>.</summary>
    public LoraInit InitLoraWeights { get; init; } = LoraInit.Default;
    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary><c>inference_mode</c>: true in saved adapters.</summary>
    public bool InferenceMode { get; init; }
    /// <summary>
    /// <c>modules_to_save</c>: modules trained whole and saved with the adapter (e.g. <c>embed_tokens</c>, which with a
    /// tied head is the head too); empty = none. See <see cref="SavedModules"/>.
    /// </summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = [];
    /// <summary>
    /// <c>ensure_weight_tying</c> (null when the file does not say). SharpTune trains a saved token embedding of a model
    /// whose output head is tied to it as the head too; PEFT does that only with <c>ensure_weight_tying: true</c> and
    /// otherwise keeps the head at the base weights, so an explicit <c>false</c> there is refused when injected, and an
    /// adapter injected into such a model with the embedding in <see cref="ModulesToSave"/> records (and saves) <c>true</c>.
    /// </summary>
    public bool? EnsureWeightTying { get; init; }
    /// <summary>
    /// <c>trainable_token_indices</c> (PEFT 0.15): token ids whose embedding rows (and so a tied head's) train beside
    /// the LoRA layers, saved as <c>…embed_tokens.token_adapter.trainable_tokens_delta</c>; empty = none. PEFT's dict
    /// form (a list per module) is not read. See <see cref="TrainableTokens"/>.
    /// </summary>
    public IReadOnlyList<int> TrainableTokenIndices { get; init; } = [];
    /// <summary>
    /// <c>rank_pattern</c>: per-module ranks overriding <see cref="R"/>. A key matches a module whose path equals it or
    /// ends with "." + it, the key read as a regular expression; the first matching key wins (PEFT's get_pattern_key).
    /// </summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = System.Collections.ObjectModel.ReadOnlyDictionary<string, int>.Empty;
    /// <summary><c>alpha_pattern</c>: per-module alphas overriding <see cref="LoraAlpha"/>, matched as <see cref="RankPattern"/>.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = System.Collections.ObjectModel.ReadOnlyDictionary<string, double>.Empty;
    /// <summary><c>exclude_modules</c>: modules never wrapped even when <see cref="TargetModules"/> selects them.</summary>
    public TargetModules? ExcludeModules { get; init; }
    /// <summary>
    /// <c>layers_to_transform</c>: with a list of target names, only modules inside these decoder-layer indices are
    /// wrapped. Null = every layer.
    /// </summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }
    /// <summary>
    /// <c>target_parameters</c> (PEFT 0.17): parameters given LoRA directly, by name or name suffix
    /// (<c>mlp.experts.gate_up_proj</c>, <c>0.mlp.experts.down_proj</c>); empty = none. SharpTune supports gpt-oss's fused
    /// expert parameters (see <see cref="LoraExpertParameters"/>); needs lora_dropout 0, no DoRA and the default,
    /// "gaussian" or random initialisation, as PEFT's ParamWrapper.
    /// </summary>
    public IReadOnlyList<string> TargetParameters { get; init; } = [];
    /// <summary>
    /// <c>peft_version</c> as read from a file (PEFT writes it from 0.18.0); null when absent or built in code. It tells the
    /// layout of expert factors (see <see cref="SwappedExpertFactors"/>); not written back, since SharpTune saves its own layout.
    /// </summary>
    internal string? PeftVersion { get; init; }
    /// <summary><c>layers_pattern</c>: the name of the layer list whose index <see cref="LayersToTransform"/> reads ("layers", "h"); null = any.</summary>
    public IReadOnlyList<string>? LayersPattern { get; init; }

    public const string PeftTypeName = "LORA";
    public const string TaskType = "CAUSAL_LM";
    /// <summary>PEFT's task_type for a sequence classifier (PeftModelForSequenceClassification).</summary>
    public const string SequenceClassificationTaskType = "SEQ_CLS";
    /// <summary>
    /// PEFT's task_type for an embedding model (PeftModelForFeatureExtraction, what sentence-transformers' PEFT
    /// integration uses): the adapter wraps the decoder without its head, so saved keys carry no base-model prefix.
    /// </summary>
    public const string FeatureExtractionTaskType = "FEATURE_EXTRACTION";

    /// <summary>
    /// <c>task_type</c>: <see cref="TaskType"/> (a causal LM), <see cref="SequenceClassificationTaskType"/> (a
    /// <c>*ForSequenceClassification</c> model, whose <c>score</c> head PEFT lists in modules_to_save) or
    /// <see cref="FeatureExtractionTaskType"/> (an embedding model: PEFT wraps the headless <c>AutoModel</c>, so module
    /// names and saved keys lack the decoder's base-model prefix — <c>base_model.model.layers.0.self_attn.q_proj.lora_A.weight</c>
    /// — and target_modules / exclude_modules are matched against <c>layers.0.self_attn.q_proj</c>).
    /// </summary>
    public string PeftTaskType { get; init; } = TaskType;

    /// <summary>Whether the initialisation changes the base weights (PiSSA, OLoRA), so saving converts the adapter.</summary>
    public bool MutatesBase => InitLoraWeights is LoraInit.Pissa or LoraInit.Olora;

    /// <summary>
    /// The configuration of the ordinary LoRA a PiSSA/OLoRA adapter is saved as (PEFT's save_pretrained with
    /// path_initial_model_for_weight_conversion, peft_model.py): ΔW = s·(BA − B0A0) = s·[B, −B0]·[A; A0] has rank 2r, so
    /// r, rank_pattern and alpha_pattern double, lora_alpha doubles (× √2 with rsLoRA) to keep s, and the initialisation
    /// becomes true so loading it leaves the original base untouched.
    /// </summary>
    public LoraConfig AsConvertedLora() => this with
    {
        InitLoraWeights = LoraInit.Default,
        R = 2 * R,
        LoraAlpha = UseRsLora ? LoraAlpha * Math.Pow(2, 0.5) : LoraAlpha * 2,
        RankPattern = RankPattern.ToDictionary(p => p.Key, p => 2 * p.Value),
        AlphaPattern = AlphaPattern.ToDictionary(p => p.Key, p => 2 * p.Value),
    };

    /// <summary>The factor on BA: alpha / r, or alpha / √r with rsLoRA.</summary>
    public double Scaling => ScalingOf(R, LoraAlpha);

    /// <summary>The rank of the module at <paramref name="path"/>: its <see cref="RankPattern"/> entry, else <see cref="R"/>.</summary>
    public int RankFor(string path) => PatternValue(RankPattern, path, R);

    /// <summary>The factor on BA for the module at <paramref name="path"/>, from its own rank and alpha.</summary>
    public double ScalingFor(string path) => ScalingOf(RankFor(path), PatternValue(AlphaPattern, path, LoraAlpha));

    private double ScalingOf(int r, double alpha) => UseRsLora ? alpha / Math.Sqrt(r) : alpha / r;

    // PEFT's get_pattern_key: the first key k for which the whole path matches (.*\.)?(k).
    internal static T PatternValue<T>(IReadOnlyDictionary<string, T> pattern, string path, T fallback)
    {
        foreach (var (key, value) in pattern)
            if (Regex.IsMatch(path, $"^(.*\\.)?({key})\\z", RegexOptions.CultureInvariant)) return value;
        return fallback;
    }

    /// <summary>
    /// Whether a module that <see cref="TargetModules"/> selected is wrapped, after <see cref="ExcludeModules"/> and
    /// <see cref="LayersToTransform"/> (PEFT's check_target_module_exists).
    /// </summary>
    public bool Keeps(string path) => Keeps(path, path);

    /// <inheritdoc cref="Keeps(string)"/>
    /// <param name="matchedName">
    /// The name exclude_modules and full-path target names are matched against (for FEATURE_EXTRACTION the path without
    /// the decoder's base-model prefix, as PEFT names the headless model's modules). layers_to_transform still reads the
    /// layer index from <paramref name="path"/>: PEFT's index pattern needs a segment before the layer list, so on the
    /// headless names it would find none and select nothing.
    /// </param>
    internal bool Keeps(string path, string matchedName)
    {
        if (ExcludeModules is { } excluded && excluded.Matches(matchedName)) return false;
        if (LayersToTransform is null || TargetModules is { IsNameList: false }) return true;   // null: the default names
        // PEFT applies layers_to_transform only to suffix matches: a target listed by its full path is always kept.
        if (TargetModules is { } targets && targets.ListsExactly(matchedName)) return true;
        Match? index = null;
        if (LayersPattern is null || LayersPattern.Count == 0) index = Regex.Match(path, @"^.*?\.[^.]*\.(\d+)\.");
        else
            foreach (var layers in LayersPattern)
                if ((index = Regex.Match(path, $@"^.*?\.{layers}\.(\d+)\.")).Success) break;
        return index is { Success: true } && LayersToTransform.Contains(int.Parse(index.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// PEFT's default targets per <c>model_type</c> (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING,
    /// huggingface/peft@00073fe src/peft/utils/constants.py; Mixtral's is q/v as Llama's). Phi-3's fused attention input
    /// is <c>qkv_proj</c>; SmolLM3, Granite and OLMo 2 (absent from PEFT's table, which would ask for target_modules) get
    /// the Llama default their attention blocks share, as does OLMo 3 (absent too); stablelm is q_proj, v_proj in PEFT's table. Qwen3-MoE is absent too and, as in PEFT, needs target_modules.
    /// </summary>
    public static IReadOnlyList<string> DefaultTargetModules(string modelType) => modelType switch
    {
        "llama" or "mistral" or "qwen2" or "qwen3" or "gemma" or "gemma2" or "gemma3_text" or "smollm3" or "granite" or "olmo2"
            or "olmo3" or "mixtral" or "stablelm" => ["q_proj", "v_proj"],
        "phi3" => ["qkv_proj"],
        "gpt2" => ["c_attn"],
        "gpt_neox" => ["query_key_value"],
        "phi" => ["q_proj", "v_proj", "fc1", "fc2"],
        _ => throw new ArgumentException(
            $"no default LoRA target modules for model_type '{modelType}': give target_modules (names, a regex or \"all-linear\")"),
    };

    /// <summary>Whether PEFT has default target modules for <paramref name="modelType"/> (see <see cref="DefaultTargetModules"/>).</summary>
    internal static bool HasDefaultTargetModules(string modelType)
    {
        try { DefaultTargetModules(modelType); return true; }
        catch (ArgumentException) { return false; }
    }

    /// <summary>Throws when a value is out of range or asks for something not supported.</summary>
    public void Validate(string source = "LoRA config")
    {
        if (R <= 0) throw new ArgumentException($"{source}: r must be positive, found {R}");
        if (LoraDropout is < 0 or >= 1) throw new ArgumentException($"{source}: lora_dropout must be in [0, 1), found {LoraDropout}");
        foreach (var (key, rank) in RankPattern)
            if (rank <= 0) throw new ArgumentException($"{source}: rank_pattern['{key}'] must be positive, found {rank}");
        if (InitLoraWeights == LoraInit.Orthogonal && (R % 2 != 0 || RankPattern.Values.Any(r => r % 2 != 0)))
            throw new ArgumentException($"{source}: init_lora_weights = \"orthogonal\" needs even ranks (r and rank_pattern), found r = {R}");
        // PEFT's _convert_state_dict_for_initial_model raises at save for this mix; refused before any training.
        if (MutatesBase && UseRsLora && (RankPattern.Count > 0 || AlphaPattern.Count > 0))
            throw new NotSupportedException(
                $"{source}: init_lora_weights = \"{InitName}\" with use_rslora and rank_pattern/alpha_pattern cannot be converted to an " +
                "ordinary LoRA when saved (PEFT refuses the same conversion); drop use_rslora or the patterns");
        if (LayersToTransform is not null && TargetModules is { IsNameList: false })
            throw new ArgumentException($"{source}: layers_to_transform needs target_modules to be a list of names, not a regex string");
        // PEFT's LoraConfig.__post_init__ refuses a layers_pattern that nothing would use.
        if (LayersPattern is { Count: > 0 } && (LayersToTransform is null || TargetModules is { IsNameList: false }))
            throw new ArgumentException($"{source}: layers_pattern needs layers_to_transform and a list of target_modules names");
        if (Bias != "none")
            throw new NotSupportedException($"{source}: bias = \"{Bias}\" is not supported; only \"none\" (biases stay frozen) is");
        if (TargetParameters.Count > 0) ValidateTargetParameters(source);
    }

    // PEFT's ParamWrapper.__init__ and update_layer (tuners/lora/layer.py, huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40)
    // raise for dropout, fan_in_fan_out, lora_bias and DoRA; its initialisations from the base weight read base_layer.weight,
    // which an experts module does not have.
    private void ValidateTargetParameters(string source)
    {
        if (LoraDropout != 0)
            throw new NotSupportedException($"{source}: target_parameters needs lora_dropout = 0, found {LoraDropout} (PEFT's ParamWrapper refuses dropout: it cannot be applied to a weight update)");
        if (UseDora)
            throw new NotSupportedException($"{source}: target_parameters with use_dora is not supported (PEFT's ParamWrapper refuses DoRA)");
        if (FanInFanOut)
            throw new NotSupportedException($"{source}: target_parameters with fan_in_fan_out is not supported (PEFT's ParamWrapper refuses it)");
        if (InitLoraWeights is not (LoraInit.Default or LoraInit.Gaussian or LoraInit.Random))
            throw new NotSupportedException(
                $"{source}: target_parameters with init_lora_weights = \"{InitName}\" is not supported (true, false and \"gaussian\" are; " +
                "the others decompose a layer's weight, which PEFT's ParamWrapper reads from a .weight the experts do not have)");
        if (PeftTaskType != TaskType)
            throw new NotSupportedException($"{source}: target_parameters with task_type {PeftTaskType} is not supported; only {TaskType} is");
        foreach (var name in TargetParameters)
            if (string.IsNullOrWhiteSpace(name))
                throw new ArgumentException($"{source}: target_parameters holds an empty name");
    }

    /// <summary>PEFT's <c>trainable_token_indices</c> as a list of ids (null: none).</summary>
    private static IReadOnlyList<int> ReadTokenIndices(JsonNode? node, string source) => node switch
    {
        null => [],
        JsonArray list => list.Select(item => item is JsonValue v && v.TryGetValue<int>(out var id) ? id
            : throw new InvalidDataException($"{source}: trainable_token_indices must be a list of token ids, found {item?.ToJsonString() ?? "null"}")).ToArray(),
        JsonObject => throw new NotSupportedException($"{source}: trainable_token_indices as a mapping of module names is not supported; " +
                                                      "give a list of token ids (the token embedding's rows, which a tied head shares)"),
        _ => throw new InvalidDataException($"{source}: trainable_token_indices must be a list of token ids"),
    };

    /// <summary>The <c>adapter_config.json</c> object, with every field PEFT writes for LoRA.</summary>
    public JsonObject ToJson()
    {
        var json = FieldsEveryPeftReads();
        // Fields PEFT added in 0.14 and later: PEFT before 0.14 refuses unknown keys, so they are written only when set.
        if (ExcludeModules is not null) json["exclude_modules"] = ExcludeModules.ToJson();
        if (EnsureWeightTying is { } tie) json["ensure_weight_tying"] = tie;
        if (TargetParameters.Count > 0) json["target_parameters"] = new JsonArray([.. TargetParameters.Select(n => JsonValue.Create(n))]);
        if (TrainableTokenIndices.Count > 0) json["trainable_token_indices"] = new JsonArray([.. TrainableTokenIndices.Select(i => JsonValue.Create(i))]);
        return json;
    }

    private JsonObject FieldsEveryPeftReads() => new()
    {
        ["alpha_pattern"] = new JsonObject(AlphaPattern.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)Number(p.Value)))),
        ["auto_mapping"] = null,
        ["base_model_name_or_path"] = BaseModelNameOrPath,
        ["bias"] = Bias,
        ["fan_in_fan_out"] = FanInFanOut,
        ["inference_mode"] = InferenceMode,
        ["init_lora_weights"] = InitLoraWeights switch
        {
            LoraInit.Default or LoraInit.Loftq => JsonValue.Create(true),   // LoftQ: PEFT's example saves true, so loading does not run it again
            LoraInit.Gaussian => JsonValue.Create("gaussian"),
            LoraInit.Orthogonal or LoraInit.Pissa or LoraInit.Olora => JsonValue.Create(InitName),
            _ => JsonValue.Create(false),
        },
        ["layer_replication"] = null,
        ["layers_pattern"] = LayersPattern is null ? null : new JsonArray([.. LayersPattern.Select(p => JsonValue.Create(p))]),
        ["layers_to_transform"] = LayersToTransform is null ? null : new JsonArray([.. LayersToTransform.Select(i => JsonValue.Create(i))]),
        ["loftq_config"] = new JsonObject(),
        ["lora_alpha"] = Number(LoraAlpha),
        ["lora_dropout"] = LoraDropout,
        ["megatron_config"] = null,
        ["megatron_core"] = "megatron.core",
        ["modules_to_save"] = ModulesToSave.Count == 0 ? null : new JsonArray([.. ModulesToSave.Select(m => JsonValue.Create(m))]),
        ["peft_type"] = PeftTypeName,
        ["r"] = R,
        ["rank_pattern"] = new JsonObject(RankPattern.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)JsonValue.Create(p.Value)))),
        ["revision"] = null,
        ["target_modules"] = TargetModules?.ToJson(),
        ["task_type"] = PeftTaskType,
        ["use_dora"] = UseDora,
        ["use_rslora"] = UseRsLora,
    };

    // Fields PEFT may set that change which weights exist or how they are used; reading past them would give a
    // different model than PEFT's, so a file that sets any of them is refused.
    private static readonly string[] UnsupportedFields =
    [
        "layer_replication", "loftq_config", "megatron_config",
        "use_qalora", "lora_bias", "corda_config", "eva_config", "lora_ga_config", "alora_invocation_tokens",
        "velora_config", "monteclora_config", "use_bdlora", "arrow_config", "kasa_config",
    ];

    // Fields read above, and fields that do not change the computation (bookkeeping; qalora_group_size only matters
    // with use_qalora; runtime_config is never saved). Any other field PEFT (or a later PEFT) sets is refused, since
    // a new LoRA variant announces itself by such a field.
    private static readonly HashSet<string> KnownFields =
    [
        .. AdapterState.PeftConfigFields,
        "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "use_rslora", "use_dora", "bias",
        "fan_in_fan_out", "init_lora_weights", "modules_to_save", "rank_pattern", "alpha_pattern", "layers_to_transform",
        "layers_pattern", "megatron_core", "qalora_group_size", "ensure_weight_tying", "trainable_token_indices", "target_parameters",
    ];

    /// <summary>Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static LoraConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        // Values built in code (not parsed) refuse numeric conversions such as long → double; a reparse makes them uniform.
        json = JsonNode.Parse(json.ToJsonString())!.AsObject();
        AdapterState.RequireType(json, PeftTypeName, source, [SequenceClassificationTaskType, FeatureExtractionTaskType]);
        AdapterState.RefuseFields(json, UnsupportedFields, source);
        AdapterState.RefuseUnknownFields(json, KnownFields, "a LoRA", source);

        var config = new LoraConfig
        {
            R = AdapterState.Read(json, "r", 8, source),
            LoraAlpha = AdapterState.Read(json, "lora_alpha", 8.0, source),
            LoraDropout = AdapterState.Read(json, "lora_dropout", 0.0, source),
            TargetModules = json["target_modules"] is { } targets ? Peft.TargetModules.FromJson(targets, source) : null,
            PeftVersion = AdapterState.Read<string?>(json, "peft_version", null, source),
            UseRsLora = AdapterState.Read(json, "use_rslora", false, source),
            UseDora = AdapterState.Read(json, "use_dora", false, source),
            Bias = AdapterState.Read(json, "bias", "none", source),
            FanInFanOut = AdapterState.Read(json, "fan_in_fan_out", false, source),
            InitLoraWeights = ReadInit(json["init_lora_weights"], source),
            BaseModelNameOrPath = AdapterState.Read<string?>(json, "base_model_name_or_path", null, source),
            InferenceMode = AdapterState.Read(json, "inference_mode", false, source),
            ModulesToSave = AdapterState.ReadNames(json["modules_to_save"], "modules_to_save", source),
            PeftTaskType = AdapterState.Read<string?>(json, "task_type", null, source) ?? TaskType,
            EnsureWeightTying = AdapterState.Read<bool?>(json, "ensure_weight_tying", null, source),
            TrainableTokenIndices = ReadTokenIndices(json["trainable_token_indices"], source),
            // PEFT's LoraConfig.__post_init__ refuses a string here ("must be a list of strings or None").
            TargetParameters = json["target_parameters"] is JsonValue text && text.TryGetValue<string>(out _)
                ? throw new InvalidDataException($"{source}: target_parameters must be a list of parameter names, not a string")
                : AdapterState.ReadNames(json["target_parameters"], "target_parameters", source),
            RankPattern = ReadPattern(json["rank_pattern"], "rank_pattern", source, v => v.GetValue<int>()),
            AlphaPattern = ReadPattern(json["alpha_pattern"], "alpha_pattern", source, v => v.GetValue<double>()),
            ExcludeModules = AdapterState.ReadModuleSelection(json["exclude_modules"], "exclude_modules", source),
            LayersToTransform = json["layers_to_transform"] switch
            {
                null => null,
                JsonValue v when v.TryGetValue<int>(out var single) => [single],
                JsonArray a when a.All(n => n is JsonValue v && v.TryGetValue<int>(out _)) => [.. a.Select(n => n!.GetValue<int>())],
                var node => throw new InvalidDataException($"{source}: field 'layers_to_transform' must be a layer index or a list of them, found {node.ToJsonString()}"),
            },
            LayersPattern = json["layers_pattern"] switch
            {
                null => null,
                JsonValue v when v.TryGetValue<string>(out var single) => [single],
                var node => AdapterState.ReadNames(node, "layers_pattern", source),
            },
        };
        config.Validate(source);
        return config;
    }

    internal static IReadOnlyDictionary<string, T> ReadPattern<T>(JsonNode? node, string key, string source, Func<JsonValue, T> read)
    {
        if (node is null or JsonObject { Count: 0 }) return System.Collections.ObjectModel.ReadOnlyDictionary<string, T>.Empty;
        var pattern = new Dictionary<string, T>();
        if (node is not JsonObject entries)
            throw new InvalidDataException($"{source}: field '{key}' must be an object of module pattern → value, found {node.ToJsonString()}");
        foreach (var (name, value) in entries)
        {
            Peft.TargetModules.ParsePattern(name, key, source);   // keys are regexes (PEFT's get_pattern_key)
            try { pattern[name] = read(value as JsonValue ?? throw new FormatException()); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw new InvalidDataException($"{source}: {key}['{name}'] must be a number, found {value?.ToJsonString() ?? "null"}");
            }
        }
        return pattern;
    }

    internal static JsonValue Number(double value) => value == Math.Floor(value) ? JsonValue.Create((long)value) : JsonValue.Create(value);

    private string InitName => InitLoraWeights switch
    {
        LoraInit.Gaussian => "gaussian",
        LoraInit.Orthogonal => "orthogonal",
        LoraInit.Pissa => "pissa",
        LoraInit.Olora => "olora",
        LoraInit.Loftq => "loftq",
        _ => InitLoraWeights.ToString(),
    };

    /// <summary>
    /// Reads an <c>init_lora_weights</c> value written as text (a training config or command line): "true", "false" or
    /// one of the names <see cref="FromJson"/> accepts; <paramref name="source"/> names it in errors.
    /// </summary>
    public static LoraInit ParseInit(string text, string source) =>
        ReadInit(bool.TryParse(text.Trim(), out var flag) ? JsonValue.Create(flag) : JsonValue.Create(text.Trim()), source);

    private static LoraInit ReadInit(JsonNode? node, string source)
    {
        if (node is null) return LoraInit.Default;
        if (node is JsonValue v && v.TryGetValue<bool>(out var b)) return b ? LoraInit.Default : LoraInit.Random;
        // PEFT compares "gaussian" and "olora" case-insensitively, the others exactly (LoraLayer.update_layer).
        var name = node is JsonValue s && s.TryGetValue<string>(out var text) ? text : null;
        return name?.ToLowerInvariant() switch
        {
            "gaussian" => LoraInit.Gaussian,
            "olora" => LoraInit.Olora,
            _ when name == "orthogonal" => LoraInit.Orthogonal,
            _ when name == "pissa" => LoraInit.Pissa,
            _ when name == "loftq" => LoraInit.Loftq,
            _ => throw new NotSupportedException(
                $"{source}: init_lora_weights = {node.ToJsonString()} is not supported (true, false, \"gaussian\", \"orthogonal\", " +
                "\"pissa\", \"olora\" and \"loftq\" are; \"pissa_niter_N\" needs a randomized SVD whose result SharpTune cannot reproduce, and " +
                "\"eva\", \"corda\" need data SharpTune does not collect)"),
        };
    }
}
