using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>Reads and writes the tensor file of an adapter folder (<c>adapter_model.safetensors</c>).</summary>
public interface IAdapterTensorStore
{
    /// <summary>All tensors of the file at <paramref name="path"/>; the caller disposes them.</summary>
    IReadOnlyDictionary<string, Tensor> Read(string path);

    /// <summary>Writes <paramref name="tensors"/> with the header metadata <paramref name="metadata"/>.</summary>
    void Write(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string> metadata);
}

/// <summary>The file names of a PEFT adapter folder and the tensor store used when none is passed.</summary>
public static class AdapterFiles
{
    public const string ConfigFileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";
    public const string LegacyWeightsFileName = "adapter_model.bin";

    /// <summary>PEFT's safetensors header metadata.</summary>
    public static readonly IReadOnlyDictionary<string, string> Metadata = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>
    /// The store <see cref="PeftAdapters.Save"/> and <see cref="PeftAdapters.Load"/> use when none is passed:
    /// the safetensors implementation of SharpTune.IO.
    /// </summary>
    public static IAdapterTensorStore DefaultStore { get; set; } = SafetensorsAdapterStore.Instance;

    internal static IAdapterTensorStore Resolve(IAdapterTensorStore? store) => store ?? DefaultStore;
}
