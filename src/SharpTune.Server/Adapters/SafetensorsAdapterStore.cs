using SharpTune.IO;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Server.Adapters;

/// <summary>Adapter tensor files through SharpTune's own bounded, validated safetensors reader and writer.</summary>
public sealed class SafetensorsAdapterStore : IAdapterTensorStore
{
    /// <summary>The shared instance (the store holds no state).</summary>
    public static SafetensorsAdapterStore Instance { get; } = new();

    /// <inheritdoc />
    public IReadOnlyDictionary<string, Tensor> Read(string path)
    {
        using var file = SafetensorsFile.Open(path);
        var tensors = new Dictionary<string, Tensor>();
        try
        {
            foreach (var name in file.Tensors.Keys) tensors[name] = file.Read(name);
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return tensors;
    }

    /// <inheritdoc />
    public void Write(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string> metadata) =>
        SafetensorsWriter.Write(path, tensors, metadata);
}
