using SharpTune.Models;

namespace SharpTune.Export.Gguf;

/// <summary>
/// A tensor of the GGUF file in terms of the checkpoint: its llama.cpp name, NumPy-order shape, and how to compute its
/// float32 values (row-major) from the checkpoint's tensors.
/// </summary>
internal sealed record MappedTensor(string Name, long[] Shape, Func<IWeightSource, float[]> Values);

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

    private static readonly Dictionary<string, Func<GgufArchitecture>> Registry = new()
    {
        ["LlamaForCausalLM"] = () => new LlamaFamilyGguf("llama", permuteQk: true),
        ["MistralForCausalLM"] = () => new LlamaFamilyGguf("llama", permuteQk: true),
        ["Qwen2ForCausalLM"] = () => new LlamaFamilyGguf("qwen2", permuteQk: false),
        ["Qwen3ForCausalLM"] = () => new LlamaFamilyGguf("qwen3", permuteQk: false),
        ["GPT2LMHeadModel"] = () => new Gpt2Gguf(),
    };

    public static IReadOnlyCollection<string> SupportedArchitectures => Registry.Keys;

    public static GgufArchitecture For(ModelConfig config) =>
        Registry.TryGetValue(config.Architecture, out var create) ? create()
            : throw new NotSupportedException(
                $"GGUF export does not support architecture '{config.Architecture}'; supported: {string.Join(", ", Registry.Keys)}");

    protected static void Add(List<KeyValuePair<string, GgufValue>> metadata, string key, GgufValue value) => metadata.Add(new(key, value));

    /// <summary>Reads a tensor unchanged.</summary>
    protected static MappedTensor Same(string ggufName, string checkpointName, IWeightSource source) =>
        new(ggufName, source.ShapeOf(checkpointName), s => s.Read(checkpointName));

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
}
