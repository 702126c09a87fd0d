using SharpTune.IO;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>Adapter tensors in safetensors files, through SharpTune.IO (validated reads, atomic writes).</summary>
public sealed class SafetensorsAdapterStore : IAdapterTensorStore
{
    public static readonly SafetensorsAdapterStore Instance = new();

    public IReadOnlyDictionary<string, Tensor> Read(string path)
    {
        using var file = SafetensorsFile.Open(path);
        return file.Tensors.Keys.ToDictionary(name => name, name => file.Read(name));
    }

    public void Write(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string> metadata) =>
        SafetensorsWriter.Write(path, tensors, metadata);
}
