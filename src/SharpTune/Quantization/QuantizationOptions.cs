using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>The storage formats of a quantized frozen base, as bitsandbytes names them.</summary>
public enum QuantizationType
{
    /// <summary>4-bit NormalFloat (QLoRA): 16 quantiles of N(0, 1), one absmax per 64 weights.</summary>
    Nf4,

    /// <summary>bitsandbytes' 4-bit float (1 sign, 2 exponent, 1 mantissa bit), one absmax per 64 weights.</summary>
    Fp4,

    /// <summary>LLM.int8's vector-wise int8: one absmax per output row.</summary>
    Int8,
}

/// <summary>
/// How the frozen linear layers of a decoder are stored and computed: <see cref="Type"/> is the storage format,
/// <see cref="ComputeDtype"/> the dtype weights are dequantized to inside the forward pass (bitsandbytes'
/// <c>bnb_4bit_compute_dtype</c>), <see cref="DoubleQuant"/> quantizes the 4-bit absmax values once more
/// (<c>bnb_4bit_use_double_quant</c>, 8-bit blocks of 256, on by default as in the QLoRA paper). <see cref="LmHead"/>
/// quantizes an untied output head too, as llama.cpp's quantized files do (its Q8_0 stores the head in Q8_0): off by
/// default, as transformers' bitsandbytes integration keeps the head in the compute dtype. The head is the largest
/// single matrix a decode step reads (M: 49 MB of its 134 in int8), so quantizing it is what makes decode fastest.
/// </summary>
public sealed record QuantizationOptions(QuantizationType Type, ScalarType ComputeDtype = ScalarType.BFloat16, bool DoubleQuant = true,
    bool LmHead = false)
{
    /// <summary>The names accepted by <see cref="ParseType"/>.</summary>
    public static readonly IReadOnlyList<string> TypeNames = ["nf4", "fp4", "int8"];

    /// <summary>Whether this is one of the 4-bit block formats.</summary>
    public bool IsFourBit => Type is QuantizationType.Nf4 or QuantizationType.Fp4;

    /// <summary>The lower-case name users type ("nf4", "fp4", "int8").</summary>
    public string TypeName => Name(Type);

    /// <summary>The lower-case name of <paramref name="type"/>.</summary>
    public static string Name(QuantizationType type) => type switch
    {
        QuantizationType.Nf4 => "nf4",
        QuantizationType.Fp4 => "fp4",
        _ => "int8",
    };

    /// <summary>Parses "nf4", "fp4" or "int8" (any case); anything else is an error naming <paramref name="source"/>.</summary>
    public static QuantizationType ParseType(string value, string source = "--quantize") => value.Trim().ToLowerInvariant() switch
    {
        "nf4" => QuantizationType.Nf4,
        "fp4" => QuantizationType.Fp4,
        "int8" or "8bit" => QuantizationType.Int8,
        _ => throw new ArgumentException($"{source}: unknown quantization '{value}'; use one of {string.Join(", ", TypeNames)}"),
    };

    /// <summary>
    /// Builds options from user strings: <paramref name="type"/> as <see cref="ParseType"/>, <paramref name="computeDtype"/>
    /// bf16|f32|f16 (default bf16), <paramref name="doubleQuant"/> true|false (default true; 4-bit only),
    /// <paramref name="lmHead"/> whether the output head is quantized too (default false).
    /// </summary>
    public static QuantizationOptions Parse(string type, string? computeDtype = null, string? doubleQuant = null, string source = "--quantize",
        bool lmHead = false)
    {
        var parsedType = ParseType(type, source);
        var dtype = computeDtype is null ? ScalarType.BFloat16 : ParseComputeDtype(computeDtype);
        var dq = doubleQuant is null || ParseBool(doubleQuant, "--double-quant");
        return new QuantizationOptions(parsedType, dtype, dq, lmHead).Validated();
    }

    /// <summary>bf16, f32 or f16 (the dtypes a dequantized weight can take); anything else is a clear error.</summary>
    public static ScalarType ParseComputeDtype(string value)
    {
        try
        {
            return ModelFactory.ParseDtype(value);
        }
        catch (ArgumentException)
        {
            throw new ArgumentException($"--compute-dtype: unknown dtype '{value}'; use bf16, f32 or f16");
        }
    }

    /// <summary>Throws when the combination cannot work (a compute dtype that is not floating point).</summary>
    public QuantizationOptions Validated()
    {
        if (ComputeDtype is not (ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float16))
            throw new ArgumentException($"compute dtype must be bf16, f32 or f16, not {ComputeDtype}");
        return this;
    }

    /// <summary>Storage bits per weight, statistics included (NF4 + double quantization: 4 + 8/64 + 32/(64·256) ≈ 4.127).</summary>
    public double BitsPerWeight(long inFeatures) => Type switch
    {
        QuantizationType.Int8 => 8 + 32.0 / inFeatures,
        _ when DoubleQuant => 4 + 8.0 / FourBitCodec.BlockSize + 32.0 / (FourBitCodec.BlockSize * DoubleQuantizedAbsmax.BlockSize),
        _ => 4 + 32.0 / FourBitCodec.BlockSize,
    };

    private static bool ParseBool(string value, string source) => value.Trim().ToLowerInvariant() switch
    {
        "true" or "1" or "yes" or "on" => true,
        "false" or "0" or "no" or "off" => false,
        _ => throw new ArgumentException($"{source}: expected true or false, found '{value}'"),
    };

    public override string ToString() =>
        $"{TypeName}{(IsFourBit && DoubleQuant ? " + double quantization" : "")}{(LmHead ? ", output head included" : "")}, compute {ModelFactory.DtypeName(ComputeDtype)}";
}
