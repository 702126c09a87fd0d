using System.Text;
using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// Reads a checkpoint saved by transformers with bitsandbytes straight into <see cref="QuantizedLinear"/> layers. A layer
/// is quantized exactly when the file stores it so: 4-bit <c>X.weight</c> (uint8, two codes per byte, the first element
/// in the high nibble, row-major — SharpTune's own packing) with <c>X.weight.absmax</c>, <c>X.weight.quant_map</c>, under
/// double quantization <c>X.weight.nested_absmax</c> / <c>nested_quant_map</c>, and the JSON blob
/// <c>X.weight.quant_state.bitsandbytes__nf4|fp4</c> (bitsandbytes' QuantState.as_dict(packed=True)); LLM.int8
/// <c>X.weight</c> (int8, (out, in)) with <c>X.SCB</c> (fp32 row absmax) and <c>X.weight_format</c> (0 = row-major).
/// Layers stored in full precision (the head, <c>llm_int8_skip_modules</c>) load as plain layers.
/// </summary>
internal static partial class BitsAndBytesCheckpoint
{
    private const string QuantStatePrefix = "quant_state.bitsandbytes__";

    public static CausalLanguageModel Load(string modelDir, BitsAndBytesConfig bnb, QuantizationOptions? requested,
        ScalarType? dtype, Device? device)
    {
        var config = ModelConfig.Load(modelDir);
        var configPath = Path.Combine(modelDir, "config.json");
        var int8Compute = dtype ?? TorchDtypeOf(config) ?? ScalarType.BFloat16;
        var options = bnb.ResolveOptions(requested, int8Compute, configPath);
        using var checkpoint = HfCheckpoint.Open(modelDir);
        return QuantizedModelBuilder.Build(modelDir, config, checkpoint, dtype ?? options.ComputeDtype, device, includeHead: true,
            (target, placeholderBias) =>
            {
                if (target.StoredName is not { } stored) return null;   // WeightLoader reports it
                var expected = target.Layer is Models.Conv1D   // transformers stores Conv1D's (out, in)
                    ? [target.WeightShape[1], target.WeightShape[0]]
                    : target.WeightShape;
                QuantizedWeight? weight = bnb.IsFourBit
                    ? ReadFourBit(checkpoint, stored, expected, bnb, target.Consumed)
                    : ReadInt8(checkpoint, stored, expected, target.Consumed);
                if (weight is null)
                {
                    if (options.LmHead && TargetModules.IsOutputHead(target.Path))
                        throw new ArgumentException(
                            $"--quantize-lm-head: {modelDir} stores {target.Path} unquantized ({BitsAndBytesConfig.Key}.llm_int8_skip_modules or a tied head); drop the flag");
                    return null;
                }
                return QuantizedLinear.FromStored(weight, placeholderBias, options);
            },
            afterLayers: quantizedCount =>
            {
                if (quantizedCount == 0)
                    throw new InvalidDataException(
                        $"{modelDir}: config.json has a bitsandbytes {BitsAndBytesConfig.Key} but no tensor is stored quantized " +
                        $"(no '*.weight.{QuantStatePrefix}*' or '*.SCB' entries)");
            });
    }

    internal static ScalarType? TorchDtypeOf(ModelConfig config)
    {
        if (config.TorchDtype is not { } name) return null;
        try
        {
            var parsed = ModelFactory.ParseDtype(name);
            return parsed is ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32 ? parsed : null;
        }
        catch (ArgumentException) { return null; }
    }

    private static FourBitWeight? ReadFourBit(CheckpointIndex checkpoint, string stored, long[] shape, BitsAndBytesConfig bnb,
        ISet<string> consumed)
    {
        var stateKeys = checkpoint.Tensors.Keys.Where(k => k.StartsWith(stored + "." + QuantStatePrefix, StringComparison.Ordinal)).ToList();
        if (stateKeys.Count == 0) return null;
        if (stateKeys.Count > 1) throw new InvalidDataException($"{stored}: more than one quant_state ({string.Join(", ", stateKeys)})");
        var stateKey = stateKeys[0];
        string Where(string field) => $"{stateKey} field '{field}'";
        JsonObject state;
        using (var blob = checkpoint.Read(stateKey, ScalarType.Byte))
        {
            try { state = JsonNode.Parse(Encoding.UTF8.GetString(blob.data<byte>().ToArray())) as JsonObject ?? throw new InvalidDataException($"{stateKey}: not a JSON object"); }
            catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{stateKey}: not valid JSON ({e.Message})"); }
        }
        var expectedType = QuantizationOptions.Name(bnb.Type);
        var quantType = state["quant_type"]?.GetValue<string>();
        if (quantType != expectedType || stateKey[(stored.Length + 1 + QuantStatePrefix.Length)..] != expectedType)
            throw new InvalidDataException(
                $"{Where("quant_type")} is '{quantType}' but config.json's {BitsAndBytesConfig.Key}.bnb_4bit_quant_type is '{expectedType}'");
        var blockSize = state["blocksize"]?.GetValue<int>();
        if (blockSize != FourBitCodec.BlockSize)
            throw new NotSupportedException($"{Where("blocksize")} is {blockSize}; SharpTune's 4-bit layers use bitsandbytes' default {FourBitCodec.BlockSize}");
        var storedShape = (state["shape"] as JsonArray)?.Select(n => n!.GetValue<long>()).ToArray();
        if (storedShape is null || !storedShape.SequenceEqual(shape))
            throw new InvalidDataException($"{Where("shape")} is [{string.Join(", ", storedShape ?? [])}], the model expects [{string.Join(", ", shape)}]");
        var dtypeName = state["dtype"]?.GetValue<string>();
        ScalarType quantizedFrom = dtypeName switch
        {
            "float32" => ScalarType.Float32,
            "bfloat16" => ScalarType.BFloat16,
            "float16" => ScalarType.Float16,
            _ => throw new NotSupportedException($"{Where("dtype")} is '{dtypeName}'; bitsandbytes quantizes float32, bfloat16 or float16"),
        };
        var codec = FourBitCodec.For(bnb.Type);
        var n = shape[0] * shape[1];
        var blocks = (n + FourBitCodec.BlockSize - 1) / FourBitCodec.BlockSize;
        using var scope = NewDisposeScope();
        var packed = ReadExact(checkpoint, stored, SafetensorsDType.U8, (n + 1) / 2, "the packed codes (uint8 storage)").reshape(-1);
        using (var map = ReadExact(checkpoint, stored + ".quant_map", SafetensorsDType.F32, 16, "the 4-bit code book"))
            RequireEqual(map, codec.Code, stored + ".quant_map", $"bitsandbytes' {expectedType} code book");
        consumed.Add(stateKey);
        consumed.Add(stored + ".quant_map");
        consumed.Add(stored + ".absmax");
        var nested = checkpoint.Tensors.ContainsKey(stored + ".nested_absmax");
        if (nested != bnb.DoubleQuant)
            throw new InvalidDataException(
                $"{stored}: {(nested ? "has" : "lacks")} nested_absmax but config.json's {BitsAndBytesConfig.Key}.bnb_4bit_use_double_quant is {(bnb.DoubleQuant ? "true" : "false")}");
        Tensor? absmax = null;
        DoubleQuantizedAbsmax? doubleQuantized = null;
        if (nested)
        {
            if (state["nested_blocksize"]?.GetValue<int>() != DoubleQuantizedAbsmax.BlockSize)
                throw new NotSupportedException($"{Where("nested_blocksize")} is {state["nested_blocksize"]?.ToJsonString()}; only {DoubleQuantizedAbsmax.BlockSize} is supported");
            if (state["nested_dtype"]?.GetValue<string>() != "float32")
                throw new NotSupportedException($"{Where("nested_dtype")} is {state["nested_dtype"]?.ToJsonString()}; bitsandbytes' absmax are float32");
            if (state["nested_offset"] is not JsonValue offsetNode || !offsetNode.TryGetValue<double>(out var offset))
                throw new InvalidDataException($"{Where("nested_offset")} is missing or not a number");
            var codes = ReadExact(checkpoint, stored + ".absmax", SafetensorsDType.U8, blocks, "the double-quantized absmax codes");
            var absmax2 = ReadExact(checkpoint, stored + ".nested_absmax", SafetensorsDType.F32,
                (blocks + DoubleQuantizedAbsmax.BlockSize - 1) / DoubleQuantizedAbsmax.BlockSize, "the second-level absmax");
            var map = ReadExact(checkpoint, stored + ".nested_quant_map", SafetensorsDType.F32, 256, "the dynamic map");
            consumed.Add(stored + ".nested_absmax");
            consumed.Add(stored + ".nested_quant_map");
            // QuantState.from_dict: torch.tensor(float(nested_offset)), an fp32 scalar.
            doubleQuantized = DoubleQuantizedAbsmax.FromStored(codes, absmax2, (float)offset, map);
        }
        else absmax = ReadExact(checkpoint, stored + ".absmax", SafetensorsDType.F32, blocks, "the absmax per block of 64");
        return new FourBitWeight(codec, shape[0], shape[1], packed, absmax, doubleQuantized)
        {
            QuantizedFrom = quantizedFrom == ScalarType.Float32 ? null : quantizedFrom,
        };
    }

    private static Int8Weight? ReadInt8(CheckpointIndex checkpoint, string stored, long[] shape, ISet<string> consumed)
    {
        var prefix = stored.EndsWith(".weight", StringComparison.Ordinal) ? stored[..^".weight".Length] : stored;
        if (!checkpoint.Tensors.ContainsKey(prefix + ".SCB")) return null;
        var info = checkpoint.Tensors[stored].Info;
        if (info.DType != SafetensorsDType.I8 || !info.Shape.SequenceEqual(shape))
            throw new InvalidDataException(
                $"{stored}: expected int8 [{string.Join(", ", shape)}] (LLM.int8 row-major codes), found {info.DType} [{string.Join(", ", info.Shape)}]");
        if (checkpoint.Tensors.ContainsKey(prefix + ".weight_format"))
        {
            // Linear8bitLt.maybe_rearrange_weight: only 0 ("row") is loadable; col32/turing/ampere are tiled GPU layouts.
            using var format = checkpoint.Read(prefix + ".weight_format", ScalarType.Int64);
            if (format.numel() != 1 || format.reshape(-1)[0].item<long>() != 0)
                throw new NotSupportedException($"{prefix}.weight_format is not 0 (row-major); re-save the checkpoint with bitsandbytes ≥ 0.45, which stores rows");
            consumed.Add(prefix + ".weight_format");
        }
        using var scope = NewDisposeScope();
        var codes = checkpoint.Read(stored, ScalarType.Int8);
        var scb = ReadExact(checkpoint, prefix + ".SCB", SafetensorsDType.F32, shape[0], "the fp32 absmax per output row");
        consumed.Add(prefix + ".SCB");
        return new Int8Weight(codes.MoveToOuterDisposeScope(), scb.reshape(-1).MoveToOuterDisposeScope());
    }

    private static Tensor ReadExact(CheckpointIndex checkpoint, string name, SafetensorsDType dtype, long count, string what)
    {
        if (!checkpoint.Tensors.TryGetValue(name, out var entry))
            throw new InvalidDataException($"{name} is missing ({what})");
        var info = entry.Info;
        var numel = info.Shape.Aggregate(1L, (a, b) => a * b);
        if (info.DType != dtype || numel != count)
            throw new InvalidDataException($"{name} ({what}): expected {dtype} with {count} elements, found {info.DType} [{string.Join(", ", info.Shape)}]");
        return checkpoint.Read(name, dtype.ToScalarType());
    }

    private static void RequireEqual(Tensor stored, IReadOnlyList<float> expected, string name, string what)
    {
        var values = stored.reshape(-1).data<float>().ToArray();
        for (var i = 0; i < values.Length; i++)
            if (BitConverter.SingleToInt32Bits(values[i]) != BitConverter.SingleToInt32Bits(expected[i]) && values[i] != expected[i])
                throw new NotSupportedException($"{name}[{i}] is {values[i]:R}, not {what}'s {expected[i]:R}: a custom code book is not supported");
    }
}
