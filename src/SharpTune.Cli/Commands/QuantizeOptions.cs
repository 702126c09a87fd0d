using System.CommandLine;
using SharpTune.Quantization;

namespace SharpTune.Cli.Commands;

/// <summary>
/// --quantize, --compute-dtype, --double-quant and --quantize-lm-head, shared by every command that loads a base model (train, generate,
/// eval, compare, serve, merge, estimate, info).
/// </summary>
internal sealed class QuantizeOptions
{
    public Option<string?> Quantize { get; } = new("--quantize")
    {
        Description = "Load the decoder's linear layers quantized: nf4|fp4|int8 (bitsandbytes' formats; adapters train on top)",
    };

    public Option<string?> ComputeDtype { get; } = new("--compute-dtype")
    {
        Description = "With --quantize: dtype weights are dequantized to and unquantized weights kept in: bf16 (default) or f32",
    };

    public Option<string?> DoubleQuant { get; } = new("--double-quant")
    {
        Description = "With 4-bit --quantize: quantize the absmax statistics too (true, the default, or false)",
    };

    public Option<bool> LmHead { get; } = new("--quantize-lm-head")
    {
        Description = "With --quantize: quantize an untied output head too, as llama.cpp's quantized files do (default: kept in the compute dtype)",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Quantize);
        command.Options.Add(ComputeDtype);
        command.Options.Add(DoubleQuant);
        command.Options.Add(LmHead);
    }

    private const string WithoutQuantize =
        "--compute-dtype, --double-quant and --quantize-lm-head apply to a quantized base: add --quantize nf4|fp4|int8";

    /// <summary>The settings, or null without --quantize; --compute-dtype/--double-quant alone are an error.</summary>
    public QuantizationOptions? Parse(ParseResult parse)
    {
        var type = parse.GetValue(Quantize);
        if (type is null)
        {
            if (parse.GetValue(ComputeDtype) is not null || parse.GetValue(DoubleQuant) is not null || parse.GetValue(LmHead))
                throw new ArgumentException(WithoutQuantize);
            return null;
        }
        return QuantizationOptions.Parse(type, parse.GetValue(ComputeDtype), parse.GetValue(DoubleQuant), lmHead: parse.GetValue(LmHead));
    }

    /// <summary>Training options with these flags over the config's quantize / compute_dtype / double_quant (validated).</summary>
    public SharpTune.Training.TrainingOptions ApplyTo(SharpTune.Training.TrainingOptions options, ParseResult parse)
    {
        var doubleQuant = parse.GetValue(DoubleQuant);
        // A value typed on the command line is named as the flag in the error, not as the config key.
        if (parse.GetValue(Quantize) is { } flag) QuantizationOptions.ParseType(flag);
        var result = options with
        {
            Quantize = parse.GetValue(Quantize) ?? options.Quantize,
            ComputeDtype = parse.GetValue(ComputeDtype) ?? options.ComputeDtype,
            DoubleQuant = doubleQuant is null ? options.DoubleQuant : QuantizationOptions.Parse("nf4", null, doubleQuant).DoubleQuant,
            QuantizeLmHead = parse.GetValue(LmHead) || options.QuantizeLmHead,
        };
        if (result.Quantize is null && (result.ComputeDtype is not null || doubleQuant is not null || result.QuantizeLmHead))
            throw new ArgumentException(WithoutQuantize);
        result.QuantizationSettings();   // a wrong value fails here, before any work
        return result;
    }
}
