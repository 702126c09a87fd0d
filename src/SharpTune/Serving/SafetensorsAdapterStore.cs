using SharpTune.IO;
using SharpTune.Peft;
using static TorchSharp.torch;

namespace SharpTune.Serving;

/// <summary>
/// Adapter tensor files through SharpTune.IO's safetensors reader and writer. Used by <see cref="LocalChatClient"/> when no
/// <see cref="AdapterFiles.DefaultStore"/> is configured, so loading an adapter works without extra set-up.
/// </summary>
internal sealed class SafetensorsAdapterStore : IAdapterTensorStore
{
    public static readonly SafetensorsAdapterStore Instance = new();

    public IReadOnlyDictionary<string, Tensor> Read(string path)
    {
        using var file = SafetensorsFile.Open(path);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var name in file.Tensors.Keys) tensors.Add(name, file.Read(name));
            return tensors;
        }
        catch
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
            throw;
        }
    }

    public void Write(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string> metadata) =>
        SafetensorsWriter.Write(path, tensors, metadata);
}
