using TorchSharp;

namespace SharpTune.IO;

/// <summary>
/// Hugging Face model folders: weights in <c>model.safetensors</c>, or in shards <c>model-00001-of-00003.safetensors</c>
/// listed by <c>model.safetensors.index.json</c> (<c>{"metadata": {"total_size": …}, "weight_map": {name: file}}</c>).
/// </summary>
public static partial class HfCheckpoint
{
    /// <summary>The single-file weights name.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The shard index name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>
    /// Opens a checkpoint folder (or a single .safetensors file) and validates it without reading tensor data: every file
    /// the index names exists inside the folder, every listed tensor is in its file, and no tensor is in two files.
    /// A folder with both layouts is read from <c>model.safetensors</c>, as transformers does. Tensors a shard holds
    /// beyond those its index lists are included, since transformers loads whole shards.
    /// </summary>
    /// <exception cref="SafetensorsFormatException">The index or a weights file is malformed or inconsistent.</exception>
    /// <exception cref="FileNotFoundException">The folder holds neither weights layout.</exception>
    public static CheckpointIndex Open(string dir)
    {
        TensorBytes.EnsureLittleEndianHost();
        if (File.Exists(dir))
            return FromFiles(Path.GetDirectoryName(Path.GetFullPath(dir))!, [Path.GetFileName(dir)], weightMap: null, indexPath: null, totalSize: null);
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"checkpoint folder not found: {dir}");
        if (File.Exists(Path.Combine(dir, SingleFileName)))
            return FromFiles(dir, [SingleFileName], weightMap: null, indexPath: null, totalSize: null);

        var indexPath = Path.Combine(dir, IndexFileName);
        if (!File.Exists(indexPath))
            throw new FileNotFoundException($"{dir}: holds neither {SingleFileName} nor {IndexFileName}; expected a Hugging Face model folder with safetensors weights", indexPath);
        var index = CheckpointIndexJson.Read(indexPath);
        var files = new List<string>();
        foreach (var (tensor, file) in index.WeightMap)
        {
            if (!IsPlainFileName(file))
                throw new SafetensorsFormatException(indexPath, $"weight_map['{tensor}']: expected a file name inside the folder, found \"{file}\"");
            if (files.Contains(file)) continue;
            if (!File.Exists(Path.Combine(dir, file)))
                throw new SafetensorsFormatException(indexPath, $"weight_map['{tensor}']: names shard '{file}', which does not exist in {dir}");
            files.Add(file);
        }
        files.Sort(StringComparer.Ordinal);
        return FromFiles(dir, files, index.WeightMap, indexPath, index.TotalSize);
    }

    /// <summary>Reads every tensor of a checkpoint folder, one at a time, optionally converting each to <paramref name="asType"/>.</summary>
    public static Dictionary<string, torch.Tensor> LoadAll(string dir, torch.ScalarType? asType = null)
    {
        using var checkpoint = Open(dir);
        var tensors = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        try
        {
            // File order, then offset order: the disk reads sequentially.
            foreach (var (name, _) in checkpoint.Tensors.OrderBy(t => t.Value.File, StringComparer.Ordinal).ThenBy(t => t.Value.Info.Begin))
                tensors.Add(name, checkpoint.Read(name, asType));
            return tensors;
        }
        catch
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
            throw;
        }
    }

    /// <summary>True for a bare file name that cannot point outside its folder.</summary>
    internal static bool IsPlainFileName(string name) =>
        name.Length > 0 && name != "." && name != ".."
        && name.IndexOfAny(['/', '\\', ':']) < 0
        && name.IndexOfAny(Path.GetInvalidFileNameChars()) < 0
        && Path.GetFileName(name) == name;

    private static CheckpointIndex FromFiles(string dir, IReadOnlyList<string> files, IReadOnlyDictionary<string, string>? weightMap,
        string? indexPath, long? totalSize)
    {
        var tensors = new Dictionary<string, CheckpointTensor>(StringComparer.Ordinal);
        IReadOnlyDictionary<string, string> fileMetadata = new Dictionary<string, string>();
        foreach (var fileName in files)
        {
            using var file = SafetensorsFile.Open(Path.Combine(dir, fileName));
            if (fileName == files[0]) fileMetadata = file.Metadata;
            foreach (var info in file.Tensors.Values)
            {
                if (tensors.TryGetValue(info.Name, out var earlier))
                    throw new SafetensorsFormatException(file.Path, $"tensor '{info.Name}': also stored in shard '{earlier.File}'; each tensor must be in exactly one shard");
                tensors.Add(info.Name, new CheckpointTensor(fileName, info));
            }
        }
        if (weightMap is not null)
        {
            foreach (var (name, fileName) in weightMap)
            {
                if (!tensors.TryGetValue(name, out var found) || found.File != fileName)
                    throw new SafetensorsFormatException(Path.Combine(dir, fileName),
                        $"tensor '{name}': listed in {indexPath} as stored here, but this file does not hold it{(found is null ? "" : $" (it is in '{found.File}')")}");
            }
        }
        return new CheckpointIndex(dir, tensors, files, totalSize, fileMetadata);
    }
}
