using System.Text;
using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Quantization;

internal static partial class BitsAndBytesCheckpoint
{
    /// <summary>
    /// Writes a model with quantized layers as transformers' save_pretrained does with bitsandbytes: config.json with
    /// <c>quantization_config</c> (BitsAndBytesConfig.to_dict(), keys sorted as transformers writes them) and, per layer,
    /// the tensors Linear4bit._save_to_state_dict / Linear8bitLt._save_to_state_dict write.
    /// </summary>
    internal static void Save(CausalLanguageModel model, string outputDir, long maxShardBytes)
    {
        var layers = ModelQuantizer.QuantizedLayers(model);
        var types = layers.Select(l => l.Layer.Weight.Type).Distinct().ToList();
        if (types.Count != 1) throw new NotSupportedException($"a bitsandbytes checkpoint holds one format; this model mixes {string.Join(", ", types)}");
        var type = types[0];
        var fourBit = type is not QuantizationType.Int8;
        var doubleQuant = fourBit && layers.All(l => ((FourBitWeight)l.Layer.Weight).DoubleQuantized is not null);
        if (fourBit && !doubleQuant && layers.Any(l => ((FourBitWeight)l.Layer.Weight).DoubleQuantized is not null))
            throw new NotSupportedException("a bitsandbytes checkpoint is double-quantized throughout or not at all; this model mixes both");
        var compute = layers[0].Layer.ComputeDtype;
        var headQuantized = layers.Any(l => TargetModules.IsOutputHead(model, l.Path));

        var tensors = new List<KeyValuePair<string, Tensor>>();
        var owned = new List<Tensor>();
        Tensor Own(Tensor t) { owned.Add(t); return t; }
        try
        {
            tensors.AddRange(model.state_dict().Where(kv => !model.IsIgnorableCheckpointTensor(kv.Key)));
            foreach (var (path, layer) in layers)
            {
                var name = path + ".weight";
                switch (layer.Weight)
                {
                    case FourBitWeight w:
                        tensors.Add(new(name, Own(w.Packed.reshape(-1, 1))));   // Params4bit data: (n/2, 1) uint8
                        var state = new JsonObject
                        {
                            ["quant_type"] = QuantizationOptions.Name(w.Type),
                            ["blocksize"] = FourBitCodec.BlockSize,
                            ["dtype"] = ModelFactory.DtypeName(w.QuantizedFrom ?? ScalarType.Float32),
                            ["shape"] = new JsonArray(w.OutFeatures, w.InFeatures),
                        };
                        tensors.Add(new(name + ".quant_map", Own(tensor(w.Codec.Code.ToArray()))));
                        if (w.DoubleQuantized is { } dq)
                        {
                            tensors.Add(new(name + ".absmax", dq.Codes));
                            tensors.Add(new(name + ".nested_absmax", dq.Absmax));
                            tensors.Add(new(name + ".nested_quant_map", Own(tensor(dq.CodeValues.ToArray()))));
                            state["nested_blocksize"] = DoubleQuantizedAbsmax.BlockSize;
                            state["nested_dtype"] = "float32";
                            state["nested_offset"] = JsonNode.Parse(PythonJson.FloatRepr(dq.Offset.to(ScalarType.Float32).item<float>()));
                        }
                        else tensors.Add(new(name + ".absmax", w.Absmax!));
                        // QuantState.as_dict(packed=True) → pack_dict_to_tensor: json.dumps with its default separators.
                        var json = PythonJson.Dumps(state);
                        tensors.Add(new(name + "." + QuantStatePrefix + QuantizationOptions.Name(w.Type), Own(tensor(Encoding.UTF8.GetBytes(json)))));
                        break;
                    case Int8Weight w:
                        tensors.Add(new(name, w.Codes));
                        tensors.Add(new(path + ".SCB", w.RowAbsmax));
                        tensors.Add(new(path + ".weight_format", Own(tensor((byte)0))));   // 0 = "row", as Linear8bitLt saves
                        break;
                }
            }
            var config = System.Text.Json.Nodes.JsonNode.Parse(model.Config.ToJson())!.AsObject();
            config["torch_dtype"] = ModelFactory.DtypeName(model.WeightDtype);
            config[BitsAndBytesConfig.Key] = QuantizationConfigJson(type, doubleQuant, compute, headQuantized);
            Directory.CreateDirectory(outputDir);
            File.WriteAllText(Path.Combine(outputDir, "config.json"), SortedJson(config));
            HfCheckpoint.Save(outputDir, tensors, maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally
        {
            foreach (var t in owned) t.Dispose();
        }
    }

    /// <summary>BitsAndBytesConfig(...).to_dict() for the stored format (transformers' defaults for the rest).</summary>
    private static JsonObject QuantizationConfigJson(QuantizationType type, bool doubleQuant, ScalarType compute, bool headQuantized)
    {
        var fourBit = type is not QuantizationType.Int8;
        return new JsonObject
        {
            ["_load_in_4bit"] = fourBit,
            ["_load_in_8bit"] = !fourBit,
            ["bnb_4bit_compute_dtype"] = fourBit ? ModelFactory.DtypeName(compute) : "float32",
            ["bnb_4bit_quant_storage"] = "uint8",
            ["bnb_4bit_quant_type"] = fourBit ? QuantizationOptions.Name(type) : "fp4",
            ["bnb_4bit_use_double_quant"] = doubleQuant,
            ["llm_int8_enable_fp32_cpu_offload"] = false,
            ["llm_int8_has_fp16_weight"] = false,
            // None makes transformers keep lm_head unquantized; an empty list quantizes it, as this file stores it.
            ["llm_int8_skip_modules"] = headQuantized ? new JsonArray() : null,
            ["llm_int8_threshold"] = JsonNode.Parse("6.0"),
            ["load_in_4bit"] = fourBit,
            ["load_in_8bit"] = !fourBit,
            ["quant_method"] = "bitsandbytes",
        };
    }

    // PretrainedConfig.to_json_string: json.dumps(indent=2, sort_keys=True).
    private static string SortedJson(JsonObject config)
    {
        static JsonNode? Sort(JsonNode? node) => node switch
        {
            JsonObject o => new JsonObject(o.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => KeyValuePair.Create(kv.Key, Sort(kv.Value?.DeepClone())))),
            JsonArray a => new JsonArray(a.Select(n => Sort(n?.DeepClone())).ToArray()),
            _ => node?.DeepClone(),
        };
        return Sort(config)!.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n";
    }
}
