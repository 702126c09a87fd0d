using System.Text.Json.Nodes;

namespace SharpTune.Peft.Vera;

/// <summary>
/// VeRA's settings (Kopiczko et al. 2023, "VeRA: Vector-based Random Matrix Adaptation"), one property per field of
/// PEFT's <c>VeraConfig</c> JSON (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/vera/config.py).
/// </summary>
public sealed record VeraConfig
{
    public const string PeftTypeName = "VERA";

    /// <summary><c>r</c>: the rows of the shared projections (PEFT's default 256; VeRA wants far higher ranks than LoRA).</summary>
    public int R { get; init; } = 256;
    /// <summary><c>target_modules</c>: names, a regex or "all-linear"; null = PEFT's default (the LoRA table's targets).</summary>
    public TargetModules? TargetModules { get; init; }
    /// <summary><c>projection_prng_key</c>: the seed of the CPU generator that draws vera_A and vera_B (PEFT's default 0).</summary>
    public long ProjectionPrngKey { get; init; }
    /// <summary>
    /// <c>save_projection</c>: save vera_A and vera_B in the adapter file (<c>base_model.vera_A</c>, <c>base_model.vera_B</c>);
    /// when false they are drawn again from <see cref="ProjectionPrngKey"/> on load.
    /// </summary>
    public bool SaveProjection { get; init; } = true;
    /// <summary><c>vera_dropout</c>: dropout on the layer's input before the projections, in training.</summary>
    public double VeraDropout { get; init; }
    /// <summary><c>d_initial</c>: the starting value of every entry of vera_lambda_d (PEFT's default 0.1).</summary>
    public double DInitial { get; init; } = 0.1;
    /// <summary>
    /// <c>fan_in_fan_out</c>: the targets store weights (in, out), as GPT-2's Conv1D. Changes nothing computed: PEFT sets
    /// it per layer (true for Conv1D, false for Linear, with a warning), as Inject does when it records it.
    /// </summary>
    public bool FanInFanOut { get; init; }
    /// <summary><c>bias</c>: only "none" (biases stay frozen) is supported.</summary>
    public string Bias { get; init; } = "none";
    /// <summary><c>modules_to_save</c>: modules trained whole and saved with the adapter; empty = none.</summary>
    public IReadOnlyList<string> ModulesToSave { get; init; } = [];
    /// <summary>
    /// <c>init_weights</c>: true = PEFT's reset_vera_parameters (vera_lambda_b zero, so the model starts as the base,
    /// vera_lambda_d = <see cref="DInitial"/>); false = vera_lambda_b one and vera_lambda_d standard normal (for tests).
    /// </summary>
    public bool InitWeights { get; init; } = true;
    /// <summary><c>base_model_name_or_path</c>.</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary><c>inference_mode</c>: true in saved adapters.</summary>
    public bool InferenceMode { get; init; }

    /// <summary>
    /// PEFT's TRANSFORMERS_MODELS_TO_VERA_TARGET_MODULES_MAPPING (utils/constants.py, huggingface/peft@5d602fdb): a copy of
    /// LoRA's table (see <see cref="PeftConfigFields"/>) with phi set to q_proj and v_proj.
    /// </summary>
    public static IReadOnlyList<string> DefaultTargetModules(string modelType) =>
        modelType == "phi" ? ["q_proj", "v_proj"] : PeftConfigFields.DefaultTargetModules(modelType, "VeRA");

    /// <summary>Throws, naming the field, when a value is out of range or asks for what is not implemented.</summary>
    public void Validate(string source = "VeRA config")
    {
        // PEFT raises for r ≤ 0 when a layer is built (VeraLayer.update_layer); refused here before any model is touched.
        if (R <= 0) throw new ArgumentException($"{source}: r should be a positive integer value but the value passed is {R}");
        if (VeraDropout is < 0 or >= 1 || double.IsNaN(VeraDropout))
            throw new ArgumentException($"{source}: vera_dropout must be in [0, 1), found {VeraDropout}");
        if (!double.IsFinite(DInitial)) throw new ArgumentException($"{source}: d_initial must be a finite number, found {DInitial}");
        if (Bias != "none")
            throw new NotSupportedException($"{source}: bias = \"{Bias}\" is not supported; only \"none\" (biases stay frozen) is");
    }

    /// <summary>The <c>adapter_config.json</c> object, with every field PEFT writes for VeRA.</summary>
    public JsonObject ToJson()
    {
        var json = PeftConfigFields.Write(PeftTypeName, new(TargetModules, ModulesToSave, BaseModelNameOrPath, InferenceMode));
        json["bias"] = Bias;
        json["d_initial"] = DInitial;
        json["fan_in_fan_out"] = FanInFanOut;
        json["init_weights"] = InitWeights;
        json["projection_prng_key"] = ProjectionPrngKey;
        json["r"] = R;
        json["save_projection"] = SaveProjection;
        json["vera_dropout"] = VeraDropout;
        return json;
    }

    // PEFT's VeraConfig fields: the ones every PeftConfig has and VeRA's own.
    private static readonly HashSet<string> KnownFields =
    [
        .. PeftConfigFields.Names,
        "r", "projection_prng_key", "save_projection", "vera_dropout", "d_initial", "fan_in_fan_out", "bias", "init_weights",
    ];

    /// <summary>
    /// Reads PEFT's <c>adapter_config.json</c> object; <paramref name="source"/> names the file in errors. Refuses
    /// <c>layers_to_transform</c>/<c>layers_pattern</c> (not implemented) and a task other than CAUSAL_LM.
    /// </summary>
    public static VeraConfig FromJson(JsonObject json, string source = AdapterFiles.ConfigFileName)
    {
        // Values built in code (not parsed) refuse numeric conversions such as long → double; a reparse makes them uniform.
        json = JsonNode.Parse(json.ToJsonString())!.AsObject();
        AdapterState.RequireType(json, PeftTypeName, source);
        AdapterState.RefuseUnknownFields(json, KnownFields, "a VeRA", source);
        var common = PeftConfigFields.Read(json, PeftTypeName, source);
        var config = new VeraConfig
        {
            R = AdapterState.Read(json, "r", 256, source),
            TargetModules = common.TargetModules,
            ProjectionPrngKey = AdapterState.Read(json, "projection_prng_key", 0L, source),
            SaveProjection = AdapterState.Read(json, "save_projection", true, source),
            VeraDropout = AdapterState.Read(json, "vera_dropout", 0.0, source),
            DInitial = AdapterState.Read(json, "d_initial", 0.1, source),
            FanInFanOut = AdapterState.Read(json, "fan_in_fan_out", false, source),
            Bias = AdapterState.Read(json, "bias", "none", source),
            ModulesToSave = common.ModulesToSave,
            InitWeights = AdapterState.Read(json, "init_weights", true, source),
            BaseModelNameOrPath = common.BaseModelNameOrPath,
            InferenceMode = common.InferenceMode,
        };
        config.Validate(source);
        return config;
    }
}
