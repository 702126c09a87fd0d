using TorchSharp;
using SharpTune.IO;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>Loads and saves models in Hugging Face layout (config.json + safetensors, single file or shards).</summary>
public static class PretrainedModel
{
    /// <summary>
    /// Loads a model folder. Weights are read one tensor at a time straight into the parameters, so a model is never
    /// held twice. <paramref name="dtype"/> null keeps the checkpoint's dtype (config.json's torch_dtype, else the
    /// first floating tensor's).
    /// </summary>
    /// <param name="quantization">When set, the decoder's linear layers are loaded quantized (see ModelQuantizer) and
    /// the other weights take <paramref name="dtype"/>, by default the compute dtype.</param>
    /// <remarks>
    /// A folder saved by transformers with bitsandbytes (config.json's <c>quantization_config</c>) loads its stored
    /// quantized layers as they are, whether or not <paramref name="quantization"/> is given: its compute dtype wins over
    /// <c>bnb_4bit_compute_dtype</c>, and a format that contradicts the checkpoint's is an error.
    /// </remarks>
    public static CausalLanguageModel Load(string modelDir, ScalarType? dtype = null, Device? device = null,
        Quantization.QuantizationOptions? quantization = null)
    {
        if (!Directory.Exists(modelDir))
            throw new DirectoryNotFoundException($"model folder not found: {modelDir}");
        if (Quantization.Mxfp4.IsDeclared(modelDir)) return LoadMxfp4(modelDir, dtype, device, quantization);
        if (Quantization.BitsAndBytesConfig.TryRead(modelDir) is { } bnb)
            return Quantization.BitsAndBytesCheckpoint.Load(modelDir, bnb, quantization, dtype, device);
        if (quantization is not null) return Quantization.ModelQuantizer.Load(modelDir, quantization, dtype, device);
        var config = ModelConfig.Load(modelDir);
        using var checkpoint = HfCheckpoint.Open(modelDir);
        var target = dtype ?? CheckpointDtype(config, checkpoint);
        var model = ModelFactory.Create(config, target);
        WeightLoader.Load(model, new CheckpointSource(checkpoint), modelDir);
        if (device is not null) model.to(device);
        model.eval();
        return model;
    }

    /// <summary>
    /// A checkpoint whose experts are stored in MXFP4 (gpt-oss): those are dequantized to the model's dtype as they are
    /// read, every other tensor loads as usual. Re-quantizing them on load (bitsandbytes) is not implemented.
    /// </summary>
    private static CausalLanguageModel LoadMxfp4(string modelDir, ScalarType? dtype, Device? device, Quantization.QuantizationOptions? quantization)
    {
        if (quantization is not null)
            throw new NotSupportedException(Quantization.Mxfp4.RequantizingRefused(modelDir));
        var config = ModelConfig.Load(modelDir);
        using var checkpoint = HfCheckpoint.Open(modelDir);
        var model = ModelFactory.Create(config, dtype ?? CheckpointDtype(config, checkpoint));
        WeightLoader.Load(model, new Quantization.Mxfp4.DequantizingSource(new CheckpointSource(checkpoint)), modelDir);
        if (device is not null) model.to(device);
        model.eval();
        return model;
    }

    /// <summary>
    /// Writes config.json and the weights (tied aliases and non-persistent buffers excluded). A model with quantized
    /// layers is written as transformers saves a bitsandbytes model (quantization_config and the quantized tensors).
    /// </summary>
    public static void Save(CausalLanguageModel model, string outputDir, long maxShardBytes = HfCheckpoint.DefaultMaxShardBytes)
    {
        if (Quantization.ModelQuantizer.IsQuantized(model))
        {
            // As transformers + bitsandbytes save a quantized model: loadable by them and by Load here.
            Quantization.BitsAndBytesCheckpoint.Save(model, outputDir, maxShardBytes);
            return;
        }
        Directory.CreateDirectory(outputDir);
        var json = System.Text.Json.Nodes.JsonNode.Parse(model.Config.ToJson())!.AsObject();
        json["torch_dtype"] = ModelFactory.DtypeName(model.WeightDtype);
        json.Remove(Quantization.BitsAndBytesConfig.Key);   // what is written here is full precision (a dequantized base included)
        File.WriteAllText(Path.Combine(outputDir, "config.json"), json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        var tensors = model.state_dict().Where(kv => !model.IsIgnorableCheckpointTensor(kv.Key));
        HfCheckpoint.Save(outputDir, tensors, maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Copies tokenizer and generation files that travel with a model folder.</summary>
    public static void CopyCompanionFiles(string fromDir, string toDir)
    {
        string[] names = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
            "tokenizer.model", "README.md", "LICENSE", "LICENSE.txt", "LICENSE.md", "USE_POLICY.md", "chat_template.jinja"];
        foreach (var name in names)
        {
            var source = Path.Combine(fromDir, name);
            if (File.Exists(source)) File.Copy(source, Path.Combine(toDir, name), overwrite: true);
        }
        // transformers (4.50 on) saves named chat templates (Cohere's tool_use) in their own folder.
        var templates = Path.Combine(fromDir, Tokenization.TokenizerConfig.AdditionalTemplatesFolder);
        if (Directory.Exists(templates))
        {
            var target = Directory.CreateDirectory(Path.Combine(toDir, Tokenization.TokenizerConfig.AdditionalTemplatesFolder)).FullName;
            foreach (var file in Directory.GetFiles(templates, "*.jinja"))
                File.Copy(file, Path.Combine(target, Path.GetFileName(file)), overwrite: true);
        }
    }

    internal static ScalarType CheckpointDtype(ModelConfig config, CheckpointIndex checkpoint)
    {
        if (config.TorchDtype is { } name)
        {
            try { return ModelFactory.ParseDtype(name); }
            catch (ArgumentException) { /* an unusual torch_dtype: fall back to the tensors themselves */ }
        }
        var first = checkpoint.Tensors.Values.Select(t => t.Info.DType)
            .FirstOrDefault(d => d is SafetensorsDType.F32 or SafetensorsDType.BF16 or SafetensorsDType.F16, SafetensorsDType.F32);
        return first switch
        {
            SafetensorsDType.BF16 => ScalarType.BFloat16,
            SafetensorsDType.F16 => ScalarType.Float16,
            _ => ScalarType.Float32,
        };
    }

    internal sealed class CheckpointSource(CheckpointIndex checkpoint) : ITensorSource
    {
        public IReadOnlyCollection<string> Names => checkpoint.Tensors.Keys.ToArray();
        public long[] ShapeOf(string name) => checkpoint.Tensors[name].Info.Shape;
        public Tensor Read(string name, ScalarType dtype) => checkpoint.Read(name, dtype);

        /// <summary>The dtype a tensor is stored in.</summary>
        public ScalarType StoredDtypeOf(string name) => checkpoint.Tensors[name].Info.DType.ToScalarType();

        public void ReadInto(string name, Tensor destination)
        {
            if (checkpoint.TryReadInto(name, destination)) return;   // the common case: no temporary copy of the tensor
            using var value = checkpoint.Read(name, destination.dtype);
            destination.copy_(value);
        }
        public IReadOnlyDictionary<string, string> Aliases { get; } =
            checkpoint.FileMetadata.Where(kv => checkpoint.Tensors.ContainsKey(kv.Value)).ToDictionary();
    }
}
