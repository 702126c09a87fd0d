using System.Text.Json.Nodes;
using SharpTune.Peft.Lora;

namespace SharpTune.Peft;

/// <summary>
/// What the configs of the methods built on PEFT's <c>PeftConfig</c> + targets share (LoHa/LoKr, VeRA, OFT): the default
/// targets (PEFT's tables for them are copies of LoRA's) and the common fields — type, task, base model, inference mode,
/// targets, modules_to_save and the layer-selection fields SharpTune writes as null — written and read in one place.
/// </summary>
internal static class PeftConfigFields
{
    /// <summary>
    /// PEFT's TRANSFORMERS_MODELS_TO_LOHA/LOKR/VERA/OFT_TARGET_MODULES_MAPPING: copies of LoRA's table
    /// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, utils/constants.py), so the defaults are
    /// <see cref="LoraConfig.DefaultTargetModules"/>; the error names <paramref name="method"/>.
    /// </summary>
    public static IReadOnlyList<string> DefaultTargetModules(string modelType, string method)
    {
        try { return LoraConfig.DefaultTargetModules(modelType); }
        catch (ArgumentException)
        {
            throw new ArgumentException(
                $"no default {method} target modules for model_type '{modelType}': give target_modules (names, a regex or \"all-linear\")");
        }
    }

    /// <summary>The common fields as a method's <c>adapter_config.json</c> writes them; the method adds its own.</summary>
    public static JsonObject Write(string peftType, Common common) => new()
    {
        ["auto_mapping"] = null,
        ["base_model_name_or_path"] = common.BaseModelNameOrPath,
        ["inference_mode"] = common.InferenceMode,
        ["layers_pattern"] = null,
        ["layers_to_transform"] = null,
        ["modules_to_save"] = common.ModulesToSave.Count == 0 ? null : new JsonArray([.. common.ModulesToSave.Select(m => JsonValue.Create(m))]),
        ["peft_type"] = peftType,
        ["revision"] = null,
        ["target_modules"] = common.TargetModules?.ToJson(),
        ["task_type"] = "CAUSAL_LM",
    };

    /// <summary>The field names <see cref="Write"/> writes and <see cref="Read"/> reads (with PeftConfig's own).</summary>
    public static readonly IReadOnlyList<string> Names =
    [
        .. AdapterState.PeftConfigFields, "target_modules", "modules_to_save", "layers_to_transform", "layers_pattern",
    ];

    /// <summary>
    /// Reads the common fields of <paramref name="json"/> (a parsed, reparsed object): checks the type (and CAUSAL_LM) and
    /// refuses <c>layers_to_transform</c>/<c>layers_pattern</c>, which SharpTune does not implement for these methods.
    /// </summary>
    public static Common Read(JsonObject json, string peftType, string source)
    {
        AdapterState.RequireType(json, peftType, source);
        AdapterState.RefuseFields(json, ["layers_to_transform", "layers_pattern"], source);
        return new Common(
            json["target_modules"] is { } targets ? Peft.TargetModules.FromJson(targets, source) : null,
            AdapterState.ReadNames(json["modules_to_save"], "modules_to_save", source),
            AdapterState.Read<string?>(json, "base_model_name_or_path", null, source),
            AdapterState.Read(json, "inference_mode", false, source));
    }

    /// <summary>The common fields' values.</summary>
    public sealed record Common(TargetModules? TargetModules, IReadOnlyList<string> ModulesToSave, string? BaseModelNameOrPath, bool InferenceMode);
}
