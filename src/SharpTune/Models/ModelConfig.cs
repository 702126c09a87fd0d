using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Models;

/// <summary>
/// The architecture-independent view of a Hugging Face <c>config.json</c>. Each family's own field names and defaults
/// (GPT-2's n_embd, Gemma 3's hidden_activation…) are mapped onto the same properties, following the family's
/// transformers config class; <see cref="Raw"/> keeps the original document so a saved model keeps every field.
/// </summary>
public sealed partial record ModelConfig
{
    public const string FullAttention = "full_attention";
    public const string SlidingAttention = "sliding_attention";

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

    /// <summary>
    /// The longest sequence the model serves: max_position_embeddings, or the length a RoPE scaling that reaches past it
    /// is configured for, when larger (YaRN: original context × factor, as Qwen's documented setting keeps
    /// max_position_embeddings at 40,960 for 131,072 tokens; dynamic NTK: max_position_embeddings × factor).
    /// transformers itself enforces no limit; Llama 3, LongRoPE and linear configs already state the extended length.
    /// </summary>
    public int ContextLength => RopeScaling switch
    {
        { Type: "yarn" } s => Math.Max(MaxPositionEmbeddings, (int)Math.Min(int.MaxValue, s.OriginalMaxPositionEmbeddings * s.Factor)),
        { Type: "dynamic" } s => (int)Math.Min(int.MaxValue, Math.Max(1.0, s.Factor) * MaxPositionEmbeddings),
        _ => MaxPositionEmbeddings,
    };
    public double NormEps { get; init; } = 1e-5;
    public double RopeTheta { get; init; } = 10000.0;
    public RopeScaling? RopeScaling { get; init; }
    public bool TieWordEmbeddings { get; init; }

    /// <summary>
    /// Built for a sequence classifier: no LM head at all, not even a head's bias over the vocabulary (Phi's lm_head.bias),
    /// as transformers' *ForSequenceClassification classes have none. Not part of config.json.
    /// </summary>
    internal bool WithoutOutputHead { get; init; }
    public bool AttentionBias { get; init; }
    public bool MlpBias { get; init; }
    public string HiddenAct { get; init; } = "silu";
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public int? PadTokenId { get; init; }
    /// <summary>The checkpoint's dtype as config.json names it (float32, bfloat16, float16), if given.</summary>
    public string? TorchDtype { get; init; }

    /// <summary>Per layer, "full_attention" or "sliding_attention" (transformers' <c>layer_types</c>); empty = all full.</summary>
    public IReadOnlyList<string> LayerTypes { get; init; } = [];
    /// <summary>Keys a sliding-attention layer sees, the current one included (transformers' masks); null = no window.</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Per layer, whether RoPE is applied (SmolLM3's <c>no_rope_layers</c>: 1 = RoPE); null = every layer.</summary>
    public IReadOnlyList<bool>? RopeLayers { get; init; }
    /// <summary>Gemma 2 and 3: attention scores are scaled by query_pre_attn_scalar^-½ instead of head_dim^-½.</summary>
    public double? QueryPreAttnScalar { get; init; }
    /// <summary>Gemma: attention scores become cap·tanh(score / cap) before the mask and softmax.</summary>
    public double? AttnLogitSoftcapping { get; init; }
    /// <summary>Gemma: logits become cap·tanh(logit / cap).</summary>
    public double? FinalLogitSoftcapping { get; init; }
    /// <summary>Granite: input embeddings are multiplied by it as the model's first step (embedding_multiplier).</summary>
    public double? EmbeddingMultiplier { get; init; }
    /// <summary>Granite: each sublayer's output is multiplied by it before the residual add (residual_multiplier).</summary>
    public double? ResidualMultiplier { get; init; }
    /// <summary>Granite: the factor on q·k (attention_multiplier) in place of head_dim^-½.</summary>
    public double? AttentionMultiplier { get; init; }
    /// <summary>Granite: logits are divided by it (logits_scaling).</summary>
    public double? LogitsScaling { get; init; }
    /// <summary>Gemma 3: RoPE base of the sliding (local) layers, which use no rope_scaling.</summary>
    public double? RopeLocalBaseFreq { get; init; }
    /// <summary>Phi-3 family: the fraction of each head's dimensions that RoPE rotates (the rest pass through).</summary>
    public double PartialRotaryFactor { get; init; } = 1.0;
    /// <summary>GPT-NeoX: attention and MLP read the same input and add to it together (use_parallel_residual); null for other families.</summary>
    public bool? UseParallelResidual { get; init; }
    /// <summary>Phi: a LayerNorm (with bias) over each head of the queries and keys before RoPE (qk_layernorm).</summary>
    public bool QkLayerNorm { get; init; }
    /// <summary>Mixture-of-experts settings (Qwen3-MoE, Mixtral); null for a dense model.</summary>
    public MixtureOfExperts? Experts { get; init; }
    /// <summary>
    /// The architecture the checkpoint was saved as when it differs from <see cref="Architecture"/> (the text model of a
    /// Gemma3ForConditionalGeneration checkpoint); weight names are mapped from that layout.
    /// </summary>
    public string? CheckpointArchitecture { get; init; }
    /// <summary>The folder's generation_config.json (its EOS ids are already part of <see cref="EosTokenIds"/>).</summary>
    public GenerationConfig Generation { get; init; } = GenerationConfig.None;
    public JsonObject Raw { get; init; } = new();

    /// <summary>The window of layer <paramref name="layer"/>, or null for full attention.</summary>
    public int? SlidingWindowOf(int layer) =>
        SlidingWindow is { } window && layer < LayerTypes.Count && LayerTypes[layer] == SlidingAttention ? window : null;

    /// <summary>Whether layer <paramref name="layer"/> rotates queries and keys.</summary>
    public bool UsesRope(int layer) => RopeLayers is null || layer >= RopeLayers.Count || RopeLayers[layer];

    /// <summary>How many dimensions of each head RoPE rotates (transformers: int(head_dim · partial_rotary_factor)).</summary>
    public int RotaryDim => (int)(HeadDim * PartialRotaryFactor);

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
        var config = FromJson(obj, path);
        // transformers' generate stops on generation_config's eos_token_id (a list for Llama 3 and Gemma 3 instruct).
        var generation = GenerationConfig.Load(modelDir);
        return config with { Generation = generation, EosTokenIds = config.EosTokenIds.Concat(generation.EosTokenIds).Distinct().ToArray() };
    }

    /// <summary>Maps a parsed config.json onto a <see cref="ModelConfig"/>; <paramref name="source"/> names it in errors.</summary>
    public static ModelConfig FromJson(JsonObject json, string source = "config.json")
    {
        // Values built in code (not parsed) refuse numeric conversions such as int → double; a reparse makes them uniform.
        json = JsonNode.Parse(json.ToJsonString())!.AsObject();
        var reader = new ConfigReader(json, source);
        var architecture = json["architectures"] is JsonArray { Count: > 0 } arr ? arr[0]!.GetValue<string>() : null;
        var modelType = reader.OptionalString("model_type") ?? "";
        architecture ??= ArchitectureOfModelType.TryGetValue(modelType, out var known) ? known
            : throw new NotSupportedException(
                $"{source}: model_type '{modelType}' is not supported and 'architectures' does not name one; supported model types: " +
                string.Join(", ", ArchitectureOfModelType.Keys));
        return architecture switch
        {
            "GPT2LMHeadModel" => Gpt2(reader, architecture, modelType),
            "GraniteForCausalLM" => Granite(reader, architecture, modelType == "" ? "granite" : modelType),
            "Olmo2ForCausalLM" => Olmo2(reader, architecture, modelType == "" ? "olmo2" : modelType),
            "GemmaForCausalLM" => Gemma(reader, architecture, modelType == "" ? "gemma" : modelType),
            "Gemma2ForCausalLM" => Gemma2(reader, architecture, modelType == "" ? "gemma2" : modelType),
            "Gemma3ForCausalLM" => Gemma3Text(reader, architecture, modelType == "" ? "gemma3_text" : modelType),
            "Gemma3ForConditionalGeneration" => Gemma3FromMultimodal(reader),
            "MixtralForCausalLM" => Mixtral(reader, architecture, modelType == "" ? "mixtral" : modelType),
            "Qwen3MoeForCausalLM" => Qwen3Moe(reader, architecture, modelType == "" ? "qwen3_moe" : modelType),
            "GptOssForCausalLM" => GptOss(reader, architecture, modelType == "" ? "gpt_oss" : modelType),
            "GPTNeoXForCausalLM" => GptNeoX(reader, architecture, modelType == "" ? "gpt_neox" : modelType),
            "PhiForCausalLM" => Phi(reader, architecture, modelType == "" ? "phi" : modelType),
            "StableLmForCausalLM" => StableLm(reader, architecture, modelType == "" ? "stablelm" : modelType),
            "Olmo3ForCausalLM" => Olmo3(reader, architecture, modelType == "" ? "olmo3" : modelType),
            "Phi3ForCausalLM" => Phi3(reader, architecture, modelType == "" ? "phi3" : modelType),
            "MixFormerSequentialForCausalLM" => RefuseMixFormer(reader, modelType),
            _ => LlamaFamily(reader, architecture, modelType),
        };
    }

    /// <summary>model_type → the causal-LM architecture transformers builds for it (for configs without 'architectures').</summary>
    public static readonly IReadOnlyDictionary<string, string> ArchitectureOfModelType = new Dictionary<string, string>
    {
        ["llama"] = "LlamaForCausalLM",
        ["mistral"] = "MistralForCausalLM",
        ["mixtral"] = "MixtralForCausalLM",
        ["qwen2"] = "Qwen2ForCausalLM",
        ["qwen3"] = "Qwen3ForCausalLM",
        ["granite"] = "GraniteForCausalLM",
        ["olmo2"] = "Olmo2ForCausalLM",
        ["gemma"] = "GemmaForCausalLM",
        ["qwen3_moe"] = "Qwen3MoeForCausalLM",
        ["gemma2"] = "Gemma2ForCausalLM",
        ["gemma3_text"] = "Gemma3ForCausalLM",
        ["gemma3"] = "Gemma3ForConditionalGeneration",
        ["phi"] = "PhiForCausalLM",
        ["phi3"] = "Phi3ForCausalLM",
        ["smollm3"] = "SmolLM3ForCausalLM",
        ["gpt2"] = "GPT2LMHeadModel",
        ["gpt_neox"] = "GPTNeoXForCausalLM",
        ["stablelm"] = "StableLmForCausalLM",
        ["olmo3"] = "Olmo3ForCausalLM",
        ["gpt_oss"] = "GptOssForCausalLM",
    };

    /// <summary>
    /// This configuration with a resized vocabulary, written to config.json's <c>vocab_size</c> (and text_config's, where
    /// the text model's fields live there) as transformers' resize_token_embeddings records it.
    /// </summary>
    internal ModelConfig WithVocabSize(int vocabSize)
    {
        var raw = (JsonObject)Raw.DeepClone();
        if (raw["text_config"] is JsonObject text && text.ContainsKey("vocab_size")) text["vocab_size"] = vocabSize;
        else raw["vocab_size"] = vocabSize;
        return this with { VocabSize = vocabSize, Raw = raw };
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
}
