using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Models;

/// <summary>RoPE frequency scaling as Hugging Face's <c>rope_scaling</c> describes it.</summary>
/// <param name="Type">"default", "linear" or "llama3".</param>
public sealed record RopeScaling(
    string Type,
    double Factor = 1.0,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192);

/// <summary>
/// The architecture-independent view of a Hugging Face <c>config.json</c>. GPT-2's own field names (n_embd, n_layer…)
/// are mapped onto the same properties; <see cref="Raw"/> keeps the original document so a saved model keeps every field.
/// </summary>
public sealed record ModelConfig
{
    public required string Architecture { get; init; }
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKeyValueHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public double NormEps { get; init; } = 1e-5;
    public double RopeTheta { get; init; } = 10000.0;
    public RopeScaling? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public bool AttentionBias { get; init; }
    public bool MlpBias { get; init; }
    public string HiddenAct { get; init; } = "silu";
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int? PadTokenId { get; init; }
    /// <summary>The checkpoint's dtype as config.json names it (float32, bfloat16, float16), if given.</summary>
    public string? TorchDtype { get; init; }
    public JsonObject Raw { get; init; } = new();

    /// <summary>Reads <c>config.json</c> from a model folder.</summary>
    public static ModelConfig Load(string modelDir)
    {
        var path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: no config.json in the model folder", path);
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: config.json is not valid JSON: {e.Message}", e); }
        if (node is not JsonObject obj)
            throw new InvalidDataException($"{path}: config.json must hold a JSON object");
        return FromJson(obj, path);
    }

    /// <summary>Maps a parsed config.json onto a <see cref="ModelConfig"/>; <paramref name="source"/> names it in errors.</summary>
    public static ModelConfig FromJson(JsonObject json, string source = "config.json")
    {
        var reader = new ConfigReader(json, source);
        var architecture = json["architectures"] is JsonArray { Count: > 0 } arr ? arr[0]!.GetValue<string>() : null;
        var modelType = reader.OptionalString("model_type") ?? "";
        architecture ??= modelType switch
        {
            "llama" => "LlamaForCausalLM",
            "mistral" => "MistralForCausalLM",
            "qwen2" => "Qwen2ForCausalLM",
            "gpt2" => "GPT2LMHeadModel",
            _ => throw new InvalidDataException($"{source}: neither 'architectures' nor a known 'model_type' says which model this is"),
        };
        return architecture == "GPT2LMHeadModel" ? Gpt2(reader, architecture, modelType) : LlamaFamily(reader, architecture, modelType);
    }

    private static ModelConfig LlamaFamily(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.RequiredInt("hidden_size");
        var heads = r.RequiredInt("num_attention_heads");
        var isQwen2 = architecture == "Qwen2ForCausalLM";
        var slidingWindow = r.OptionalInt("sliding_window");
        var maxPositions = r.OptionalInt("max_position_embeddings") ?? 2048;
        var useSliding = r.Json["use_sliding_window"]?.GetValue<bool>() ?? !isQwen2;
        if (slidingWindow is { } window && useSliding && window < maxPositions)
            throw new NotSupportedException(
                $"{r.Source}: sliding_window = {window} is smaller than max_position_embeddings = {maxPositions}; " +
                "sliding-window attention is not supported");
        return new ModelConfig
        {
            Architecture = architecture,
            ModelType = modelType,
            VocabSize = r.RequiredInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = r.RequiredInt("intermediate_size"),
            NumLayers = r.RequiredInt("num_hidden_layers"),
            NumHeads = heads,
            NumKeyValueHeads = r.OptionalInt("num_key_value_heads") ?? heads,
            HeadDim = r.OptionalInt("head_dim") ?? hidden / heads,
            MaxPositionEmbeddings = maxPositions,
            NormEps = r.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = r.OptionalDouble("rope_theta") ?? 10000.0,
            RopeScaling = ReadRopeScaling(r),
            TieWordEmbeddings = r.Json["tie_word_embeddings"]?.GetValue<bool>() ?? false,
            AttentionBias = isQwen2 || (r.Json["attention_bias"]?.GetValue<bool>() ?? false),
            MlpBias = r.Json["mlp_bias"]?.GetValue<bool>() ?? false,
            HiddenAct = r.OptionalString("hidden_act") ?? "silu",
            BosTokenId = r.OptionalInt("bos_token_id"),
            EosTokenIds = r.IntOrIntList("eos_token_id"),
            PadTokenId = r.OptionalInt("pad_token_id"),
            TorchDtype = r.OptionalString("torch_dtype") ?? r.OptionalString("dtype"),
            Raw = r.Json,
        };
    }

    private static ModelConfig Gpt2(ConfigReader r, string architecture, string modelType)
    {
        var hidden = r.RequiredInt("n_embd");
        var heads = r.RequiredInt("n_head");
        return new ModelConfig
        {
            Architecture = architecture,
            ModelType = modelType == "" ? "gpt2" : modelType,
            VocabSize = r.RequiredInt("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = r.OptionalInt("n_inner") ?? 4 * hidden,
            NumLayers = r.RequiredInt("n_layer"),
            NumHeads = heads,
            NumKeyValueHeads = heads,
            HeadDim = hidden / heads,
            MaxPositionEmbeddings = r.OptionalInt("n_positions") ?? r.OptionalInt("n_ctx") ?? 1024,
            NormEps = r.OptionalDouble("layer_norm_epsilon") ?? 1e-5,
            TieWordEmbeddings = r.Json["tie_word_embeddings"]?.GetValue<bool>() ?? true,
            AttentionBias = true,
            MlpBias = true,
            HiddenAct = r.OptionalString("activation_function") ?? "gelu_new",
            BosTokenId = r.OptionalInt("bos_token_id"),
            EosTokenIds = r.IntOrIntList("eos_token_id"),
            PadTokenId = r.OptionalInt("pad_token_id"),
            TorchDtype = r.OptionalString("torch_dtype") ?? r.OptionalString("dtype"),
            Raw = r.Json,
        };
    }

    private static RopeScaling? ReadRopeScaling(ConfigReader r)
    {
        if (r.Json["rope_scaling"] is not JsonObject scaling) return null;
        var type = (scaling["rope_type"] ?? scaling["type"])?.GetValue<string>() ?? "default";
        if (type is not ("default" or "linear" or "llama3"))
            throw new NotSupportedException($"{r.Source}: rope_scaling type '{type}' is not supported (default, linear, llama3 are)");
        double D(string key, double fallback) => scaling[key]?.GetValue<double>() ?? fallback;
        return new RopeScaling(type, D("factor", 1.0), D("low_freq_factor", 1.0), D("high_freq_factor", 4.0),
            (int)D("original_max_position_embeddings", 8192));
    }

    /// <summary>Writes this configuration as config.json content, keeping unknown fields of the original.</summary>
    public string ToJson()
    {
        var json = (JsonObject)Raw.DeepClone();
        json["architectures"] = new JsonArray(Architecture);
        json["model_type"] = ModelType;
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Token ids that end generation (config's eos_token_id, which may be a list).</summary>
    public bool IsEos(int tokenId) => EosTokenIds.Contains(tokenId);

    private sealed record ConfigReader(JsonObject Json, string Source)
    {
        public int RequiredInt(string key) =>
            OptionalInt(key) ?? throw new InvalidDataException($"{Source}: required field '{key}' is missing");

        public int? OptionalInt(string key)
        {
            var node = Json[key];
            if (node is null) return null;
            try { return node.GetValue<int>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw new InvalidDataException($"{Source}: field '{key}' must be an integer, found {node.ToJsonString()}");
            }
        }

        public double? OptionalDouble(string key)
        {
            var node = Json[key];
            if (node is null) return null;
            try { return node.GetValue<double>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw new InvalidDataException($"{Source}: field '{key}' must be a number, found {node.ToJsonString()}");
            }
        }

        public string? OptionalString(string key)
        {
            var node = Json[key];
            if (node is null) return null;
            try { return node.GetValue<string>(); }
            catch (InvalidOperationException)
            {
                throw new InvalidDataException($"{Source}: field '{key}' must be a string, found {node.ToJsonString()}");
            }
        }

        public IReadOnlyList<int> IntOrIntList(string key) => Json[key] switch
        {
            null => [],
            JsonArray a => a.Select(n => n!.GetValue<int>()).ToArray(),
            var n => [n.GetValue<int>()],
        };
    }
}
