using System.Text.Json.Nodes;
using SharpTune.Models;
using SharpTune.Runtime;

namespace SharpTune.Export.Gguf;

/// <summary>What to export: a model folder (with an adapter to merge first, if given) to one GGUF file.</summary>
public sealed record GgufExportOptions
{
    public required string ModelDir { get; init; }
    /// <summary>A PEFT LoRA/DoRA adapter folder merged into the float32 weights before conversion.</summary>
    public string? AdapterDir { get; init; }
    public required string OutputPath { get; init; }
    public GgufExportType Type { get; init; } = GgufExportType.F16;
    /// <summary>general.name; default: the model folder's name.</summary>
    public string? Name { get; init; }
}

/// <summary>What was written: the file, its size, and how many tensors got each ggml type.</summary>
public sealed record GgufExportReport(string Path, long Bytes, string Architecture, IReadOnlyDictionary<GgmlType, int> TensorTypes)
{
    /// <summary>Where llama.cpp will run the model differently from transformers (e.g. a sliding window it does not apply).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];
}

/// <summary>
/// Writes a Hugging Face model folder as a GGUF file that llama.cpp (and Ollama, LM Studio, LLamaSharp…) loads: the same
/// metadata, tensor names, layouts and tokenizer that llama.cpp's convert_hf_to_gguf.py writes, quantized the way
/// llama-quantize would quantize that file. Unsupported architectures, tokenizers or types fail before anything is written.
/// </summary>
public static class GgufExporter
{
    public static IReadOnlyCollection<string> SupportedArchitectures => GgufArchitecture.SupportedArchitectures;

    public static GgufExportReport Export(GgufExportOptions options)
    {
        GgufWriter.EnsureReplaceable(options.OutputPath);   // before the conversion's work
        var baseConfig = ModelConfig.Load(options.ModelDir);
        GgufArchitecture.For(baseConfig).Check(baseConfig);   // an unsupported architecture fails before any weights are read
        TorchRuntime.EnsureInitialised();
        var preQuantized = Quantization.BitsAndBytesConfig.TryRead(options.ModelDir);
        IWeightSource source = options.AdapterDir is not null || preQuantized is not null
            ? new MergedWeights(options.ModelDir, options.AdapterDir)
            : new CheckpointWeights(options.ModelDir);
        try
        {
            // An adapter trained with added tokens grows the vocabulary when merged: the file describes the merged model.
            var config = (source as MergedWeights)?.Config ?? baseConfig;
            var architecture = GgufArchitecture.For(config);
            var warnings = architecture.Check(config);
            if (preQuantized is not null)
                warnings = [.. warnings, $"the base is a bitsandbytes {Quantization.QuantizationOptions.Name(preQuantized.Type)} checkpoint: its weights were dequantized to f32 before GGUF quantization"];
            var tokenizerDir = options.AdapterDir is { } a && File.Exists(Path.Combine(a, "tokenizer.json")) ? a : options.ModelDir;
            var name = options.Name ?? ModelName(options.ModelDir, config);
            var metadata = new List<KeyValuePair<string, GgufValue>>
            {
                new("general.architecture", GgufValue.Str(architecture.Name)),
                new("general.type", GgufValue.Str("model")),
                new("general.name", GgufValue.Str(name)),
            };
            architecture.AddHyperParameters(metadata, config);
            metadata.Add(new("general.file_type", GgufValue.U32((uint)GgufExportTypes.FileType(options.Type))));
            metadata.Add(new("general.quantization_version", GgufValue.U32(2)));
            warnings = [.. warnings, .. GgufVocabulary.AddTo(metadata, tokenizerDir, config)];
            if (architecture.AddBosTokenUnlessTokenizerSays is { } addBos && metadata.All(kv => kv.Key != "tokenizer.ggml.add_bos_token"))
                metadata.Add(new("tokenizer.ggml.add_bos_token", GgufValue.Bool(addBos)));
            CheckPhi3NameTokens(name, metadata);

            var mapped = architecture.MapTensors(source, config);
            var types = ChooseTypes(mapped, options.Type, config.NumLayers);
            var tensors = mapped.Select(m => new GgufTensor(m.Name, m.Shape.Reverse().ToArray(), types[m.Name], stream =>
            {
                if (m.Packed is { } packed)
                {
                    stream.Write(packed.Bytes(source));
                    return;
                }
                var values = m.Values(source);
                var bytes = new byte[GgmlTypeInfo.RowBytes(types[m.Name], m.Shape[^1]) * (values.Length / m.Shape[^1])];
                GgmlCodec.Quantize(types[m.Name], values, bytes);
                stream.Write(bytes);
            })).ToList();
            var directory = Path.GetDirectoryName(Path.GetFullPath(options.OutputPath))!;
            Directory.CreateDirectory(directory);
            GgufWriter.Write(options.OutputPath, metadata, tensors);
            var counts = types.Values.GroupBy(t => t).ToDictionary(g => g.Key, g => g.Count());
            return new GgufExportReport(Path.GetFullPath(options.OutputPath), new FileInfo(options.OutputPath).Length, architecture.Name, counts)
            {
                Warnings = warnings,
            };
        }
        finally
        {
            (source as IDisposable)?.Dispose();
        }
    }

    /// <summary>Each tensor's type, decided in llama-quantize's order since its per-layer counters depend on it.</summary>
    internal static Dictionary<string, GgmlType> ChooseTypes(IReadOnlyList<MappedTensor> tensors, GgufExportType type, int layers)
    {
        var plan = new GgufTypePlan(type, tensors.Select(t => t.Name).ToArray(), layers);
        var types = new Dictionary<string, GgmlType>(StringComparer.Ordinal);
        foreach (var tensor in tensors.OrderBy(t => t.Name, Comparer<string>.Create(GgufTypePlan.QuantizeOrder)))
        {
            // Chosen for packed tensors too, since llama-quantize's per-layer counters see every tensor.
            var chosen = plan.Choose(tensor.Name, tensor.Shape[^1], tensor.Shape.Length);
            types[tensor.Name] = tensor.Packed?.Type ?? chosen;
        }
        return types;
    }

    /// <summary>
    /// llama.cpp's vocabulary loader, for a general.name containing "phi3" or "phi-3", looks up &lt;unk&gt;, &lt;s&gt;,
    /// &lt;/s&gt; and &lt;|endoftext|&gt; by text (Phi-3's token attributes) and fails to load the file when one is
    /// missing, so such a name needs those tokens.
    /// </summary>
    private static void CheckPhi3NameTokens(string name, List<KeyValuePair<string, GgufValue>> metadata)
    {
        var lower = name.ToLowerInvariant();
        if (!lower.Contains("phi3") && !lower.Contains("phi-3")) return;
        var tokens = metadata.First(kv => kv.Key == "tokenizer.ggml.tokens").Value.AsArray<string>().ToHashSet(StringComparer.Ordinal);
        var missing = new[] { "<unk>", "<s>", "</s>", "<|endoftext|>" }.Where(t => !tokens.Contains(t)).ToList();
        if (missing.Count > 0)
            throw new NotSupportedException(
                $"general.name '{name}' makes llama.cpp look up Phi-3's special tokens {string.Join(", ", missing)}, which this " +
                "vocabulary lacks, and llama.cpp would then refuse to load the file; choose a name without \"phi3\" or \"phi-3\" (--name)");
    }

    private static string ModelName(string modelDir, ModelConfig config) =>
        config.Raw["_name_or_path"] is JsonValue v && v.TryGetValue<string>(out var name) && name.Length > 0 && !name.StartsWith('/')
            ? name.Split('/')[^1]
            : new DirectoryInfo(Path.GetFullPath(modelDir)).Name;
}
