using System.Text.Json.Nodes;
using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// The <c>quantization_config</c> of a checkpoint saved by transformers with bitsandbytes (its
/// <c>BitsAndBytesConfig.to_dict()</c>): 4-bit (<c>load_in_4bit</c>, <c>bnb_4bit_quant_type</c> nf4|fp4,
/// <c>bnb_4bit_use_double_quant</c>, <c>bnb_4bit_compute_dtype</c>, <c>bnb_4bit_quant_storage</c>) or LLM.int8
/// (<c>load_in_8bit</c>). Variants SharpTune cannot read faithfully are refused here, naming the field.
/// </summary>
public sealed record BitsAndBytesConfig(QuantizationType Type, bool DoubleQuant, ScalarType ComputeDtype, IReadOnlyList<string>? SkipModules)
{
    /// <summary>config.json's key for the whole object.</summary>
    public const string Key = "quantization_config";

    /// <summary>Whether the weights are stored in 4 bits (nf4 or fp4) rather than LLM.int8's 8.</summary>
    public bool IsFourBit => Type is QuantizationType.Nf4 or QuantizationType.Fp4;

    /// <summary>The quantization of <paramref name="modelDir"/>'s config.json, or null when it has none.</summary>
    public static BitsAndBytesConfig? TryRead(string modelDir)
    {
        var path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path)) return null;
        JsonObject? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject; }
        catch (System.Text.Json.JsonException) { return null; }   // ModelConfig.Load reports a malformed config.json
        if (root?[Key] is not JsonObject q) return null;
        // MXFP4 (gpt-oss's experts) is not bitsandbytes: PretrainedModel.Load dequantizes it as it reads (Mxfp4).
        if (q["quant_method"] is JsonValue method && method.TryGetValue<string>(out var name) && name == Mxfp4.QuantMethod) return null;
        return Parse(q, path);
    }

    /// <summary>Parses a <c>quantization_config</c> object; <paramref name="source"/> names the file in errors.</summary>
    public static BitsAndBytesConfig Parse(JsonObject q, string source)
    {
        string Field(string name) => $"{source}: {Key}.{name}";
        var method = q["quant_method"]?.GetValue<string>();
        if (method != "bitsandbytes")
            throw new NotSupportedException(
                $"{Field("quant_method")} is '{method}'; SharpTune reads bitsandbytes checkpoints only (or load the full-precision model with --quantize)");
        var fourBit = Bool(q, "load_in_4bit", Field) || Bool(q, "_load_in_4bit", Field);
        var eightBit = Bool(q, "load_in_8bit", Field) || Bool(q, "_load_in_8bit", Field);
        if (fourBit == eightBit)
            throw new InvalidDataException($"{Field("load_in_4bit")} and {Field("load_in_8bit")}: exactly one must be true");
        var skip = q["llm_int8_skip_modules"] switch
        {
            null => null,
            JsonArray a => a.Select(n => n!.GetValue<string>()).ToList(),
            JsonValue v when v.TryGetValue<string>(out var one) => [one],
            var other => throw new InvalidDataException($"{Field("llm_int8_skip_modules")}: expected a list of module names, found {other.ToJsonString()}"),
        };
        if (eightBit)
        {
            // With has_fp16_weight the checkpoint holds fp16 weights re-quantized on every forward: not this format.
            if (Bool(q, "llm_int8_has_fp16_weight", Field))
                throw new NotSupportedException($"{Field("llm_int8_has_fp16_weight")} is true: SharpTune reads int8 checkpoints whose weights are stored quantized (false)");
            return new BitsAndBytesConfig(QuantizationType.Int8, false, ScalarType.Float32, skip);
        }
        var type = (q["bnb_4bit_quant_type"]?.GetValue<string>() ?? "fp4") switch
        {
            "nf4" => QuantizationType.Nf4,
            "fp4" => QuantizationType.Fp4,
            var other => throw new NotSupportedException($"{Field("bnb_4bit_quant_type")} is '{other}'; only nf4 and fp4 exist in bitsandbytes' 4-bit storage"),
        };
        var storage = q["bnb_4bit_quant_storage"]?.GetValue<string>() ?? "uint8";
        if (storage != "uint8")
            throw new NotSupportedException(
                $"{Field("bnb_4bit_quant_storage")} is '{storage}': only 'uint8' (two 4-bit codes per byte, bitsandbytes' default) is supported");
        // BitsAndBytesConfig's default compute dtype is float32 (bnb_4bit_compute_dtype=None → torch.float32).
        var computeName = q["bnb_4bit_compute_dtype"]?.GetValue<string>() ?? "float32";
        ScalarType compute;
        try { compute = ModelFactory.ParseDtype(computeName); }
        catch (ArgumentException) { throw new NotSupportedException($"{Field("bnb_4bit_compute_dtype")} is '{computeName}'; use float32, bfloat16 or float16"); }
        return new BitsAndBytesConfig(type, Bool(q, "bnb_4bit_use_double_quant", Field), compute, skip);
    }

    /// <summary>
    /// The options a model is loaded with: the checkpoint's format and double quantization, the caller's compute dtype
    /// when given (else <c>bnb_4bit_compute_dtype</c>, for int8 <paramref name="int8ComputeDtype"/>). A requested
    /// format that contradicts the checkpoint is an error naming the field.
    /// </summary>
    public QuantizationOptions ResolveOptions(QuantizationOptions? requested, ScalarType int8ComputeDtype, string source)
    {
        if (requested is not null && requested.Type != Type)
            throw new ArgumentException(
                $"--quantize {requested.TypeName} contradicts {source}: {Key}." +
                (IsFourBit ? $"bnb_4bit_quant_type is '{QuantizationOptions.Name(Type)}'" : "load_in_8bit is true") +
                $"; the checkpoint is stored quantized, so drop --quantize or give --quantize {QuantizationOptions.Name(Type)}");
        var compute = requested?.ComputeDtype ?? (IsFourBit ? ComputeDtype : int8ComputeDtype);
        return new QuantizationOptions(Type, compute, DoubleQuant, requested?.LmHead ?? false).Validated();
    }

    private static bool Bool(JsonObject q, string name, Func<string, string> field) => q[name] switch
    {
        null => false,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        var other => throw new InvalidDataException($"{field(name)}: expected true or false, found {other.ToJsonString()}"),
    };
}
