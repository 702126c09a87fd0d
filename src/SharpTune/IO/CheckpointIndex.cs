using TorchSharp;

namespace SharpTune.IO;

/// <summary>Where one tensor of a checkpoint folder lives.</summary>
/// <param name="File">The safetensors file's name inside the folder.</param>
/// <param name="Info">The tensor's header entry in that file.</param>
public sealed record CheckpointTensor(string File, SafetensorsTensorInfo Info);

/// <summary>
/// A validated Hugging Face checkpoint folder: every tensor name mapped to its file, across shards. Tensors are read one
/// at a time; each shard file is opened on first use and kept open until <see cref="Dispose"/>.
/// </summary>
public sealed class CheckpointIndex : IDisposable
{
    private readonly Dictionary<string, SafetensorsFile> openFiles = new(StringComparer.Ordinal);
    private bool disposed;

    internal CheckpointIndex(string directory, IReadOnlyDictionary<string, CheckpointTensor> tensors, IReadOnlyList<string> files,
        long? declaredTotalSize, IReadOnlyDictionary<string, string> fileMetadata)
    {
        Directory = directory;
        Tensors = tensors;
        Files = files;
        DeclaredTotalSize = declaredTotalSize;
        FileMetadata = fileMetadata;
    }

    /// <summary>The checkpoint folder.</summary>
    public string Directory { get; }

    /// <summary>Every tensor, by name.</summary>
    public IReadOnlyDictionary<string, CheckpointTensor> Tensors { get; }

    /// <summary>The safetensors files holding the weights (one, or the shards in order).</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>The index's <c>metadata.total_size</c>, when the folder is sharded and the index states one.</summary>
    public long? DeclaredTotalSize { get; }

    /// <summary>The <c>__metadata__</c> map of the first weights file (e.g. <c>{"format": "pt"}</c>).</summary>
    public IReadOnlyDictionary<string, string> FileMetadata { get; }

    /// <summary>Total bytes of tensor data across files.</summary>
    public long TotalBytes => Tensors.Values.Sum(t => t.Info.ByteLength);

    /// <summary>Reads one tensor from its file, optionally converting dtype and device.</summary>
    /// <exception cref="KeyNotFoundException">No tensor of that name in the checkpoint.</exception>
    public torch.Tensor Read(string name, torch.ScalarType? asType = null, torch.Device? device = null) =>
        FileOf(name).Read(name, asType, device);

    /// <summary>
    /// Reads one tensor straight into <paramref name="destination"/> when it is a contiguous CPU tensor of the stored
    /// dtype and shape; false (nothing read) otherwise. See <see cref="SafetensorsFile.TryReadInto"/>.
    /// </summary>
    public bool TryReadInto(string name, torch.Tensor destination) => FileOf(name).TryReadInto(name, destination);

    private SafetensorsFile FileOf(string name)
    {
        if (!Tensors.TryGetValue(name, out var location))
            throw new KeyNotFoundException($"{Directory}: no tensor named '{name}' among its {Tensors.Count} tensors");
        lock (openFiles)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (!openFiles.TryGetValue(location.File, out var file))
            {
                file = OpenUnchanged(location.File);
                openFiles.Add(location.File, file);
            }
            return file;
        }
    }

    /// <summary>Closes every shard file opened so far.</summary>
    public void Dispose()
    {
        lock (openFiles)
        {
            disposed = true;
            foreach (var file in openFiles.Values) file.Dispose();
            openFiles.Clear();
        }
    }

    /// <summary>Reopens a file validated by <see cref="HfCheckpoint.Open"/>, checking it still holds what it held then.</summary>
    private SafetensorsFile OpenUnchanged(string fileName)
    {
        var file = SafetensorsFile.Open(Path.Combine(Directory, fileName));
        foreach (var (name, location) in Tensors)
        {
            if (location.File != fileName) continue;
            if (!file.Tensors.TryGetValue(name, out var current) || !SameLayout(current, location.Info))
            {
                file.Dispose();
                throw new SafetensorsFormatException(file.Path, $"tensor '{name}': changed on disk since the checkpoint was opened");
            }
        }
        return file;
    }

    private static bool SameLayout(SafetensorsTensorInfo a, SafetensorsTensorInfo b) =>
        a.DType == b.DType && a.Begin == b.Begin && a.End == b.End && a.Shape.AsSpan().SequenceEqual(b.Shape);
}
