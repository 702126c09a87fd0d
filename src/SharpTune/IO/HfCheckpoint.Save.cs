using System.Text.RegularExpressions;
using TorchSharp;

namespace SharpTune.IO;

public static partial class HfCheckpoint
{
    /// <summary>transformers' default <c>max_shard_size</c> ("5GB").</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    [GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$")]
    private static partial Regex ShardFileName();

    /// <summary>
    /// Saves tensors as transformers' save_pretrained does: one <c>model.safetensors</c> when everything fits in
    /// <paramref name="maxShardBytes"/>, else shards <c>model-0000i-of-0000n.safetensors</c> plus the index. Shards are
    /// filled in the given order, starting a new shard when the next tensor would overflow the current one; a tensor
    /// larger than the limit gets a shard of its own. Each file carries <c>__metadata__</c> <c>{"format": "pt"}</c>
    /// plus <paramref name="metadata"/>. Weights files from an earlier save that the new layout does not use are removed.
    /// </summary>
    /// <exception cref="ArgumentException">A name is empty or repeated, or a dtype has no safetensors equivalent.</exception>
    public static void Save(string dir, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, long maxShardBytes = DefaultMaxShardBytes,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        var all = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in all)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("tensor names must be non-empty", nameof(tensors));
            if (!names.Add(name)) throw new ArgumentException($"tensor name '{name}' appears more than once", nameof(tensors));
            ArgumentNullException.ThrowIfNull(tensor, $"tensor '{name}'");
            if (!SafetensorsDTypes.TryFromScalarType(tensor.dtype, out _))
                throw new ArgumentException($"tensor '{name}': dtype {tensor.dtype} cannot be stored in safetensors", nameof(tensors));
        }

        var fileMetadata = new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" };
        if (metadata is not null)
            foreach (var (key, value) in metadata) fileMetadata[key] = value;

        Directory.CreateDirectory(dir);
        var shards = PlanShards(all, maxShardBytes);
        if (shards.Count <= 1)
        {
            SafetensorsWriter.Write(Path.Combine(dir, SingleFileName), all, fileMetadata);
            RemoveStaleWeights(dir, keep: [SingleFileName]);
            return;
        }

        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        var fileNames = new List<string>();
        for (var i = 0; i < shards.Count; i++)
        {
            var fileName = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            SafetensorsWriter.Write(Path.Combine(dir, fileName), shards[i], fileMetadata);
            foreach (var (name, _) in shards[i]) weightMap[name] = fileName;
            fileNames.Add(fileName);
        }
        CheckpointIndexJson.Write(Path.Combine(dir, IndexFileName), weightMap, all.Sum(pair => SafetensorsWriter.ByteLength(pair.Value)));
        RemoveStaleWeights(dir, keep: [.. fileNames, IndexFileName]);
    }

    /// <summary>The shard split of huggingface_hub's split_torch_state_dict_into_shards.</summary>
    private static List<List<KeyValuePair<string, torch.Tensor>>> PlanShards(List<KeyValuePair<string, torch.Tensor>> tensors, long maxShardBytes)
    {
        var shards = new List<List<KeyValuePair<string, torch.Tensor>>>();
        var current = new List<KeyValuePair<string, torch.Tensor>>();
        long currentBytes = 0;
        foreach (var pair in tensors)
        {
            var bytes = SafetensorsWriter.ByteLength(pair.Value);
            if (bytes > maxShardBytes)
            {
                shards.Add([pair]);
                continue;
            }
            if (currentBytes + bytes > maxShardBytes)
            {
                shards.Add(current);
                current = [];
                currentBytes = 0;
            }
            current.Add(pair);
            currentBytes += bytes;
        }
        if (current.Count > 0 || shards.Count == 0) shards.Add(current);
        return shards;
    }

    private static void RemoveStaleWeights(string dir, IReadOnlyCollection<string> keep)
    {
        foreach (var path in Directory.EnumerateFiles(dir))
        {
            var name = Path.GetFileName(path);
            var isWeights = name == SingleFileName || name == IndexFileName || ShardFileName().IsMatch(name);
            if (isWeights && !keep.Contains(name)) File.Delete(path);
        }
    }
}
