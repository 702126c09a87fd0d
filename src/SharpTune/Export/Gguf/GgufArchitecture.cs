using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// A tensor of the GGUF file in terms of the checkpoint: its llama.cpp name, NumPy-order shape, and how to compute its
/// float32 values (row-major) from the checkpoint's tensors.
/// </summary>
internal sealed record MappedTensor(string Name, long[] Shape, Func<IWeightSource, float[]> Values)
{
    /// <summary>
    /// For a tensor the checkpoint already stores in a ggml block format (gpt-oss's MXFP4 experts): that type and the
    /// file's bytes, written as they are whatever the export type (<see cref="Values"/> is then not called).
    /// </summary>
    public (GgmlType Type, Func<IWeightSource, byte[]> Bytes)? Packed { get; init; }
}

/// <summary>
/// One llama.cpp architecture: the <c>{arch}.*</c> hyper-parameter keys and the tensor names and layouts, as
/// llama.cpp's convert_hf_to_gguf.py writes them for the Hugging Face architecture.
/// </summary>
internal abstract class GgufArchitecture
{
    /// <summary>llama.cpp's architecture name (general.architecture and the key prefix).</summary>
    public abstract string Name { get; }

    public abstract void AddHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config);

    /// <summary>The GGUF tensors for the checkpoint tensors <paramref name="source"/> holds, in file order.</summary>
    public abstract IReadOnlyList<MappedTensor> MapTensors(IWeightSource source, ModelConfig config);

    /// <summary>The GGUF name of a checkpoint linear layer's weight (for LoRA adapters), or null when it has none.</summary>
    public abstract string? LinearName(string checkpointName);

    /// <summary>Rewrites a LoRA B matrix the way the base weight's rows are rewritten (e.g. the Q/K permutation).</summary>
    public virtual float[] TransformLoraB(string checkpointName, float[] values, long[] shape, ModelConfig config) => values;

    /// <summary>
    /// Throws <see cref="NotSupportedException"/> for a configuration llama.cpp would compute differently from
    /// transformers (so no file is written), and returns warnings for what llama.cpp reproduces only within limits.
    /// </summary>
    public virtual IReadOnlyList<string> Check(ModelConfig config) => [];

    private static readonly Dictionary<string, Func<GgufArchitecture>> Registry = new()
    {
        ["LlamaForCausalLM"] = () => new LlamaFamilyGguf("llama", permuteQk: true),
        ["MistralForCausalLM"] = () => new LlamaFamilyGguf("llama", permuteQk: true),
        ["MixtralForCausalLM"] = () => new LlamaFamilyGguf("llama", permuteQk: true),
        ["Qwen2ForCausalLM"] = () => new LlamaFamilyGguf("qwen2", permuteQk: false),
        ["Qwen3ForCausalLM"] = () => new LlamaFamilyGguf("qwen3", permuteQk: false),
        ["Qwen3MoeForCausalLM"] = () => new LlamaFamilyGguf("qwen3moe", permuteQk: false),
        ["SmolLM3ForCausalLM"] = () => new LlamaFamilyGguf("smollm3", permuteQk: true),
        ["GraniteForCausalLM"] = () => new LlamaFamilyGguf("granite", permuteQk: true),
        ["Olmo2ForCausalLM"] = () => new Olmo2Gguf(),
        ["Olmo3ForCausalLM"] = () => new Olmo2Gguf(),
        ["GemmaForCausalLM"] = () => new Gemma1Gguf(),
        ["Gemma2ForCausalLM"] = () => new Gemma2Gguf(),
        ["Gemma3ForCausalLM"] = () => new Gemma3Gguf(),
        ["Phi3ForCausalLM"] = () => new Phi3Gguf(),
        ["GPT2LMHeadModel"] = () => new Gpt2Gguf(),
        ["GPTNeoXForCausalLM"] = () => new GptNeoXGguf(),
        ["PhiForCausalLM"] = () => new PhiGguf(),
        ["StableLmForCausalLM"] = () => new StableLmGguf(),
        ["GptOssForCausalLM"] = () => new GptOssGguf(),
    };

    public static IReadOnlyCollection<string> SupportedArchitectures => Registry.Keys;

    public static GgufArchitecture For(ModelConfig config) =>
        Registry.TryGetValue(config.Architecture, out var create) ? create()
            : throw new NotSupportedException(
                $"GGUF export does not support architecture '{config.Architecture}'; supported: {string.Join(", ", Registry.Keys)}");

    protected static void Add(List<KeyValuePair<string, GgufValue>> metadata, string key, GgufValue value) => metadata.Add(new(key, value));

    /// <summary>
    /// tokenizer.ggml.add_bos_token as the converter's model class sets it in set_gguf_parameters, for when the tokenizer
    /// files say nothing (the converter's set_vocab runs after it, so theirs wins); null where the class sets none.
    /// </summary>
    public virtual bool? AddBosTokenUnlessTokenizerSays => null;

    /// <summary>
    /// For llama.cpp graphs whose MLP applies ggml's GELU, the tanh approximation: another activation is refused (it
    /// would compute another model); the exact GELU (hidden_act "gelu") is warned, since it differs by at most 5e-4.
    /// </summary>
    protected IReadOnlyList<string> CheckTanhGelu(ModelConfig config)
    {
        if (config.HiddenAct is not ("gelu" or "gelu_new" or "gelu_fast" or "gelu_pytorch_tanh"))
            throw new NotSupportedException(
                $"{config.Architecture}: hidden_act '{config.HiddenAct}' has no llama.cpp {Name} equivalent (its MLP applies the tanh-approximated GELU)");
        return config.HiddenAct == "gelu"
            ? [$"llama.cpp's {Name} uses the tanh-approximated GELU where the config's hidden_act \"gelu\" is the exact one; " +
               "the two differ by at most 5e-4 per activation"]
            : [];
    }

    /// <summary>The hyper-parameters every RMSNorm decoder writes (the converter's TextModel.set_gguf_parameters).</summary>
    protected void AddDecoderHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        Add(metadata, $"{Name}.block_count", GgufValue.U32((uint)config.NumLayers));
        Add(metadata, $"{Name}.context_length", GgufValue.U32((uint)config.MaxPositionEmbeddings));
        Add(metadata, $"{Name}.embedding_length", GgufValue.U32((uint)config.HiddenSize));
        Add(metadata, $"{Name}.feed_forward_length", GgufValue.U32((uint)config.IntermediateSize));
        Add(metadata, $"{Name}.attention.head_count", GgufValue.U32((uint)config.NumHeads));
        Add(metadata, $"{Name}.attention.head_count_kv", GgufValue.U32((uint)config.NumKeyValueHeads));
        Add(metadata, $"{Name}.rope.freq_base", GgufValue.F32((float)config.RopeTheta));
        Add(metadata, $"{Name}.attention.layer_norm_rms_epsilon", GgufValue.F32((float)config.NormEps));
    }

    /// <summary>
    /// The hyper-parameters the LayerNorm, partial-rotary decoders write (gptneox, stablelm, phi2): head_count_kv where
    /// llama.cpp's loader reads it (<paramref name="withKeyValueHeads"/>), use_parallel_residual where its graph has both
    /// blocks (<paramref name="parallelResidual"/>), rope.dimension_count (the rotated dims per head) and rope.freq_base,
    /// which the converters leave out (llama.cpp then uses 10000) and which is written so another base is honoured.
    /// </summary>
    protected void AddLayerNormRotaryHyperParameters(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config,
        bool withKeyValueHeads, bool? parallelResidual)
    {
        Add(metadata, $"{Name}.context_length", GgufValue.U32((uint)config.MaxPositionEmbeddings));
        Add(metadata, $"{Name}.embedding_length", GgufValue.U32((uint)config.HiddenSize));
        Add(metadata, $"{Name}.block_count", GgufValue.U32((uint)config.NumLayers));
        Add(metadata, $"{Name}.feed_forward_length", GgufValue.U32((uint)config.IntermediateSize));
        Add(metadata, $"{Name}.rope.dimension_count", GgufValue.U32((uint)config.RotaryDim));
        Add(metadata, $"{Name}.attention.head_count", GgufValue.U32((uint)config.NumHeads));
        if (withKeyValueHeads) Add(metadata, $"{Name}.attention.head_count_kv", GgufValue.U32((uint)config.NumKeyValueHeads));
        if (parallelResidual is { } parallel) Add(metadata, $"{Name}.use_parallel_residual", GgufValue.Bool(parallel));
        Add(metadata, $"{Name}.attention.layer_norm_epsilon", GgufValue.F32((float)config.NormEps));
        Add(metadata, $"{Name}.rope.freq_base", GgufValue.F32((float)config.RopeTheta));
    }

    /// <summary>
    /// attention.key_length / value_length where the config names head_dim (as the converter writes them) and wherever the
    /// head width differs from hidden_size / num_attention_heads, which is all llama.cpp assumes without them: Qwen3's
    /// config defaults head_dim to 128, so a config.json that leaves it out still has 128-wide heads.
    /// </summary>
    protected void AddHeadWidth(List<KeyValuePair<string, GgufValue>> metadata, ModelConfig config)
    {
        if (config.Raw["head_dim"] is null && config.HeadDim * config.NumHeads == config.HiddenSize) return;
        Add(metadata, $"{Name}.attention.key_length", GgufValue.U32((uint)config.HeadDim));
        Add(metadata, $"{Name}.attention.value_length", GgufValue.U32((uint)config.HeadDim));
    }

    /// <summary>
    /// For architectures whose llama.cpp graph has no sliding window: a warning when the model's window is shorter than
    /// its context, since llama.cpp then attends further back than transformers once a sequence outgrows the window.
    /// </summary>
    protected IEnumerable<string> IgnoredWindowWarning(ModelConfig config)
    {
        var windowed = Enumerable.Range(0, config.NumLayers).Count(i => config.SlidingWindowOf(i) is not null);
        if (windowed == 0 || config.SlidingWindow is not { } window || window >= config.MaxPositionEmbeddings) yield break;
        yield return $"llama.cpp's {Name} attends over the whole context: the model's sliding window of {window} tokens " +
                     $"({windowed} of {config.NumLayers} layers) is not applied, so llama.cpp matches transformers only while a sequence fits in {window} tokens";
    }

    /// <summary>
    /// The stored name of a decoder tensor named <paramref name="name"/> (model.…) in the text-only layout: itself, or its
    /// place in a Gemma3ForConditionalGeneration checkpoint (language_model.model.… before transformers 4.52,
    /// model.language_model.… after).
    /// </summary>
    protected static string? Stored(ISet<string> names, string name)
    {
        if (names.Contains(name)) return name;
        if (name.StartsWith("model.", StringComparison.Ordinal))
        {
            var rest = name["model.".Length..];
            foreach (var candidate in new[] { "language_model.model." + rest, "model.language_model." + rest })
                if (names.Contains(candidate)) return candidate;
        }
        if (name == "lm_head.weight" && names.Contains("language_model.lm_head.weight")) return "language_model.lm_head.weight";
        return null;
    }

    /// <summary>
    /// The decoder-layer part of a checkpoint name, as (layer, module, suffix) for model.layers.N.module.suffix, also
    /// under a Gemma 3 multimodal prefix; null for other names.
    /// </summary>
    protected static (string Layer, string Module, string Suffix)? DecoderParts(string checkpointName)
    {
        foreach (var prefix in new[] { "model.layers.", "language_model.model.layers.", "model.language_model.layers." })
        {
            if (!checkpointName.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var parts = checkpointName[prefix.Length..].Split('.');
            if (parts.Length < 3) return null;
            return (parts[0], string.Join('.', parts[1..^1]), parts[^1]);
        }
        return null;
    }

    /// <summary>
    /// token_embd from the input embeddings, or from lm_head.weight in a tied checkpoint that keeps only that name
    /// (transformers accepts either; llama.cpp reads token_embd).
    /// </summary>
    protected static void AddTokenEmbedding(List<MappedTensor> tensors, ISet<string> names, ModelConfig config, IWeightSource source)
    {
        var embedding = Stored(names, "model.embed_tokens.weight")
                        ?? (config.TieWordEmbeddings ? Stored(names, "lm_head.weight") : null)
                        ?? throw new InvalidDataException("the checkpoint has no model.embed_tokens.weight");
        tensors.Add(Same("token_embd.weight", embedding, source));
    }

    /// <summary>
    /// Every layer's weights named in <paramref name="layerTensors"/>, unchanged (blk.N.gguf ← model.layers.N.hf.weight);
    /// a missing one is an error, with <paramref name="missingHint"/> after its name.
    /// </summary>
    protected static void AddLayerWeights(List<MappedTensor> tensors, ISet<string> names, ModelConfig config, IWeightSource source,
        IEnumerable<(string Hf, string Gguf)> layerTensors, string missingHint = "")
    {
        for (var i = 0; i < config.NumLayers; i++)
            foreach (var (hf, gguf) in layerTensors)
            {
                tensors.Add(Required($"blk.{i}.{gguf}.weight", $"model.layers.{i}.{hf}.weight", names, source, missingHint));
            }
    }

    /// <summary>The final norm and, when the head is not tied to the embeddings, the output matrix of a decoder-only model.</summary>
    protected static void AddDecoderOutput(List<MappedTensor> tensors, ISet<string> names, ModelConfig config, IWeightSource source)
    {
        tensors.Add(Same("output_norm.weight", "model.norm.weight", source));
        if (!config.TieWordEmbeddings && names.Contains("lm_head.weight"))
            tensors.Add(Same("output.weight", "lm_head.weight", source));
    }

    /// <summary>
    /// The checkpoint name of the output matrix llama.cpp's loader requires: lm_head.weight, or in a tied model the
    /// weight token_embd was read from (embed_tokens, or lm_head.weight in a file that keeps only that name).
    /// </summary>
    protected static string RequiredOutputHead(ISet<string> names, ModelConfig config) =>
        config.TieWordEmbeddings ? Stored(names, "model.embed_tokens.weight") ?? "lm_head.weight" : "lm_head.weight";

    /// <summary>The GGUF name of a decoder layer's linear weight, from the architecture's (checkpoint, GGUF) name table.</summary>
    protected static string? DecoderLinearName(string checkpointName, IEnumerable<(string Hf, string Gguf)> layerTensors)
    {
        if (DecoderParts(checkpointName) is not { } parts) return null;
        var match = layerTensors.FirstOrDefault(t => t.Hf == parts.Module && !t.Gguf.EndsWith("norm", StringComparison.Ordinal));
        return match.Gguf is null ? null : $"blk.{parts.Layer}.{match.Gguf}.weight";
    }

    /// <summary>Reads a tensor unchanged.</summary>
    protected static MappedTensor Same(string ggufName, string checkpointName, IWeightSource source) =>
        new(ggufName, source.ShapeOf(checkpointName), s => s.Read(checkpointName));

    /// <summary>Reads a tensor unchanged; a checkpoint without it is an error, with <paramref name="missingHint"/> after its name.</summary>
    protected static MappedTensor Required(string ggufName, string checkpointName, ISet<string> names, IWeightSource source, string missingHint = "") =>
        names.Contains(checkpointName) ? Same(ggufName, checkpointName, source)
            : throw new InvalidDataException($"the checkpoint has no {checkpointName}{missingHint}");

    /// <summary>A 2-D tensor transposed (GPT-2's Conv1D stores [in, out]; llama.cpp wants [out, in]).</summary>
    protected static MappedTensor Transposed(string ggufName, string checkpointName, IWeightSource source)
    {
        var shape = source.ShapeOf(checkpointName);
        return new MappedTensor(ggufName, [shape[1], shape[0]], s => Transpose(s.Read(checkpointName), shape[0], shape[1]));
    }

    protected static float[] Transpose(float[] values, long rows, long columns)
    {
        var result = new float[values.Length];
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < columns; c++)
                result[c * rows + r] = values[r * columns + c];
        return result;
    }
}

/// <summary>Checkpoint tensors by Hugging Face name, read one at a time as float32.</summary>
internal interface IWeightSource
{
    IReadOnlyCollection<string> Names { get; }
    long[] ShapeOf(string name);
    float[] Read(string name);

    /// <summary>A uint8 tensor's stored bytes (MXFP4 blocks and scales), for sources that hold such tensors.</summary>
    byte[] ReadBytes(string name) => throw new NotSupportedException($"'{name}': this weight source holds no packed tensors");
}
