using System.Text.Json.Nodes;
using SharpTune.IO;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Runtime;
using static TorchSharp.torch;

namespace SharpTune.Export.Gguf;

/// <summary>A PEFT LoRA adapter folder to convert, the base model folder it was trained on, and the output file.</summary>
public sealed record GgufLoraExportOptions
{
    public required string AdapterDir { get; init; }
    public required string ModelDir { get; init; }
    public required string OutputPath { get; init; }
    public string? Name { get; init; }
}

/// <summary>
/// Writes a PEFT LoRA adapter as llama.cpp's adapter GGUF (what convert_lora_to_gguf.py writes and <c>llama-cli --lora</c>,
/// Ollama's ADAPTER and LM Studio load on top of the exported base): <c>general.type = adapter</c>, <c>adapter.type = lora</c>,
/// <c>adapter.lora.alpha</c>, and per adapted weight <c>NAME.lora_a</c> [r, in] and <c>NAME.lora_b</c> [out, r] under the
/// base tensor's GGUF name, with B's rows permuted like the base's Q/K rows. llama.cpp scales by alpha / r, so rsLoRA's
/// alpha / √r is stored as alpha·√r. LoRA on gpt-oss's fused expert parameters (target_parameters) is written as
/// per-expert 3-D tensors on <c>ffn_gate_exps</c>, <c>ffn_up_exps</c> and <c>ffn_down_exps</c> (<see cref="GgufExpertLora"/>).
/// </summary>
public static class GgufLoraExporter
{
    public static GgufExportReport Export(GgufLoraExportOptions options)
    {
        GgufWriter.EnsureReplaceable(options.OutputPath);   // before the conversion's work
        var config = ModelConfig.Load(options.ModelDir);
        var architecture = GgufArchitecture.For(config);
        var warnings = architecture.Check(config);
        var adapterConfigPath = Path.Combine(options.AdapterDir, AdapterFiles.ConfigFileName);
        if (!File.Exists(adapterConfigPath))
            throw new FileNotFoundException($"{adapterConfigPath}: not a PEFT adapter folder", adapterConfigPath);
        var adapterConfig = JsonNode.Parse(File.ReadAllText(adapterConfigPath)) as JsonObject
            ?? throw new InvalidDataException($"{adapterConfigPath}: expected a JSON object");
        var peftType = adapterConfig["peft_type"]?.GetValue<string>();
        if (peftType != "LORA")
            throw new NotSupportedException($"{adapterConfigPath}: peft_type '{peftType}' has no llama.cpp adapter format; only LoRA adapters do (merge others with `export gguf --adapter`)");
        // The fields SharpTune cannot honour (lora_bias, aLoRA…) are refused here too, naming the field: the tensor loop
        // below reads only lora_A/lora_B and would drop the rest.
        var loraConfig = LoraConfig.FromJson(adapterConfig, adapterConfigPath);
        // An adapter SharpTune saves after PiSSA/OLoRA training is already the ordinary LoRA for the original base; one
        // still naming the init (PEFT's unconverted form, a served training checkpoint) is relative to the residual.
        if (loraConfig.MutatesBase)
            throw new NotSupportedException(
                $"{adapterConfigPath}: init_lora_weights = {adapterConfig["init_lora_weights"]!.ToJsonString()}: this adapter is relative to the " +
                "residual base its initialisation computes, not to the model llama.cpp would load; export an adapter SharpTune saved (final/, " +
                "best/ and served checkpoints are converted to an ordinary LoRA for the original base), or merge this one with `export gguf --adapter`");
        if (adapterConfig["use_dora"]?.GetValue<bool>() == true)
            throw new NotSupportedException($"{adapterConfigPath}: DoRA adapters have no llama.cpp adapter format; merge it into the model with `export gguf --adapter` instead");
        foreach (var pattern in new[] { "rank_pattern", "alpha_pattern" })
            if (adapterConfig[pattern] is JsonObject { Count: > 0 })
                throw new NotSupportedException($"{adapterConfigPath}: {pattern} (per-module ranks or alphas) cannot be expressed by llama.cpp's single adapter.lora.alpha");
        var rank = adapterConfig["r"]?.GetValue<int>() ?? throw new InvalidDataException($"{adapterConfigPath}: 'r' is missing");
        var alpha = adapterConfig["lora_alpha"]?.GetValue<double>() ?? rank;
        if (adapterConfig["use_rslora"]?.GetValue<bool>() == true) alpha *= Math.Sqrt(rank);

        TorchRuntime.EnsureInitialised();
        using var weights = HfCheckpoint.Open(Path.Combine(options.AdapterDir, AdapterFiles.WeightsFileName));
        var tensors = new List<GgufTensor>();
        var baseNames = new Lazy<IReadOnlyCollection<string>>(() => BaseTensorNames(options.ModelDir));
        foreach (var aName in weights.Tensors.Keys.Where(n => n.EndsWith(".lora_A.weight", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
        {
            var module = aName[..^".lora_A.weight".Length];
            var bName = module + ".lora_B.weight";
            if (!weights.Tensors.ContainsKey(bName))
                throw new InvalidDataException($"{options.AdapterDir}: '{aName}' has no matching '{bName}'");
            var modulePath = module.StartsWith("base_model.model.", StringComparison.Ordinal) ? module["base_model.model.".Length..] : module;
            if (loraConfig.TargetParameters.Count > 0 && GgufExpertLora.IsExpertsModule(modulePath))
            {
                // LoRA on gpt-oss's fused expert parameters: llama.cpp's per-expert adapter tensors on the 3-D expert matrices.
                if (architecture.Name != "gpt-oss")
                    throw new NotSupportedException($"{adapterConfigPath}: target_parameters on '{modulePath}' converts for gpt-oss's experts only, not {architecture.Name}");
                tensors.AddRange(GgufExpertLora.Tensors(weights, aName, bName, modulePath, loraConfig, config, adapterConfigPath));
                continue;
            }
            var checkpointName = modulePath + ".weight";
            if (architecture.LinearName(checkpointName) is null && loraConfig.PeftTaskType == LoraConfig.FeatureExtractionTaskType)
                checkpointName = DecoderName(checkpointName, baseNames.Value, adapterConfigPath);
            var ggufName = architecture.LinearName(checkpointName)
                ?? throw new NotSupportedException($"{options.AdapterDir}: LoRA on '{checkpointName}' has no llama.cpp counterpart (adapters on linear layers of the decoder blocks convert)");
            var aShape = weights.Tensors[aName].Info.Shape;
            var bShape = weights.Tensors[bName].Info.Shape;
            tensors.Add(new GgufTensor(ggufName + ".lora_a", [aShape[1], aShape[0]], GgmlType.F32, stream => WriteF32(stream, Read(weights, aName))));
            tensors.Add(new GgufTensor(ggufName + ".lora_b", [bShape[1], bShape[0]], GgmlType.F32, stream =>
                WriteF32(stream, architecture.TransformLoraB(checkpointName, Read(weights, bName), bShape, config))));
        }
        if (tensors.Count == 0) throw new InvalidDataException($"{options.AdapterDir}: the adapter holds no lora_A/lora_B weights");
        if (weights.Tensors.Keys.FirstOrDefault(n => !n.Contains(".lora_A.") && !n.Contains(".lora_B.")) is { } other)
            throw new NotSupportedException($"{options.AdapterDir}: '{other}' (trained biases or extra modules) has no place in llama.cpp's LoRA format; merge with `export gguf --adapter`");

        var metadata = new List<KeyValuePair<string, GgufValue>>
        {
            new("general.architecture", GgufValue.Str(architecture.Name)),
            new("general.type", GgufValue.Str("adapter")),
            new("general.name", GgufValue.Str(options.Name ?? new DirectoryInfo(Path.GetFullPath(options.AdapterDir)).Name)),
            new("adapter.type", GgufValue.Str("lora")),
            new("adapter.lora.alpha", GgufValue.F32((float)alpha)),
            new("general.quantization_version", GgufValue.U32(2)),
        };
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(options.OutputPath))!);
        GgufWriter.Write(options.OutputPath, metadata, tensors);
        return new GgufExportReport(Path.GetFullPath(options.OutputPath), new FileInfo(options.OutputPath).Length, architecture.Name,
            new Dictionary<GgmlType, int> { [GgmlType.F32] = tensors.Count }) { Warnings = warnings };
    }

    private static IReadOnlyCollection<string> BaseTensorNames(string modelDir)
    {
        using var checkpoint = HfCheckpoint.Open(modelDir);
        return checkpoint.Tensors.Keys.ToArray();
    }

    // A FEATURE_EXTRACTION adapter wraps the headless model (transformers' AutoModel), so its keys lack the decoder's
    // base-model prefix: layers.0.self_attn.q_proj.weight is the base checkpoint's model.layers.0.self_attn.q_proj.weight.
    // With no model built here, the prefix is the base checkpoint's: the one tensor whose name ends with the headless name.
    private static string DecoderName(string headlessName, IReadOnlyCollection<string> baseNames, string adapterConfigPath)
    {
        var owners = baseNames.Where(n => n.EndsWith("." + headlessName, StringComparison.Ordinal)).ToArray();
        return owners.Length == 1 ? owners[0] : throw new NotSupportedException(
            $"{adapterConfigPath}: task_type {LoraConfig.FeatureExtractionTaskType}: the adapter's '{headlessName}' (a name in the headless model) " +
            (owners.Length == 0 ? "matches no tensor of the base model" : $"matches several tensors of the base model ({string.Join(", ", owners)})"));
    }

    private static float[] Read(CheckpointIndex weights, string name)
    {
        using var tensor = weights.Read(name, ScalarType.Float32);
        return tensor.data<float>().ToArray();
    }

    private static void WriteF32(Stream stream, float[] values)
    {
        var bytes = new byte[values.Length * 4];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        stream.Write(bytes);
    }
}
