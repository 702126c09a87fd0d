using System.Text.Json;

namespace SharpTune.IO;

/// <summary>Reads and writes <c>model.safetensors.index.json</c> in the layout transformers' save_pretrained writes:
/// keys sorted, two-space indent, <c>{"metadata": {"total_size": N}, "weight_map": {tensor: file}}</c>.</summary>
internal static class CheckpointIndexJson
{
    private const long MaxIndexBytes = 100_000_000;

    public sealed record Contents(IReadOnlyDictionary<string, string> WeightMap, long? TotalSize);

    public static Contents Read(string path)
    {
        var length = new FileInfo(path).Length;
        if (length > MaxIndexBytes)
            throw new SafetensorsFormatException(path, $"index is {length} bytes, more than the {MaxIndexBytes}-byte limit");
        ReadOnlyMemory<byte> bytes = File.ReadAllBytes(path);
        if (bytes.Span.StartsWith("\uFEFF"u8)) bytes = bytes[3..];   // a BOM some editors add
        if (!System.Text.Unicode.Utf8.IsValid(bytes.Span))
            throw new SafetensorsFormatException(path, "index is not valid UTF-8");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new SafetensorsFormatException(path, $"index is not valid JSON ({e.Message})", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException(path, $"index: expected a JSON object, found {root.ValueKind}");
            if (!root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException(path, "field 'weight_map' expected an object {tensor: file}, found " +
                    (map.ValueKind == JsonValueKind.Undefined ? "nothing" : map.ValueKind.ToString()));
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new SafetensorsFormatException(path, $"weight_map['{entry.Name}']: expected a file name string, found {entry.Value.ValueKind}");
                if (!weightMap.TryAdd(entry.Name, entry.Value.GetString()!))
                    throw new SafetensorsFormatException(path, $"weight_map['{entry.Name}']: listed twice");
            }
            return new Contents(weightMap, ReadTotalSize(path, root));
        }
    }

    public static void Write(string path, IReadOnlyDictionary<string, string> weightMap, long totalSize)
    {
        AtomicFile.Write(path, stream =>
        {
            using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                json.WriteStartObject();
                json.WriteStartObject("metadata");
                json.WriteNumber("total_size", totalSize);
                json.WriteEndObject();
                json.WriteStartObject("weight_map");
                foreach (var (tensor, file) in weightMap.OrderBy(pair => pair.Key, StringComparer.Ordinal))
                    json.WriteString(tensor, file);
                json.WriteEndObject();
                json.WriteEndObject();
            }
            stream.WriteByte((byte)'\n');
        });
    }

    private static long? ReadTotalSize(string path, JsonElement root)
    {
        if (!root.TryGetProperty("metadata", out var metadata) || metadata.ValueKind == JsonValueKind.Null) return null;
        if (metadata.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(path, $"field 'metadata' expected an object, found {metadata.ValueKind}");
        if (!metadata.TryGetProperty("total_size", out var total) || total.ValueKind == JsonValueKind.Null) return null;
        // Some exporters write total_size as a float (e.g. 1.5e10); any non-negative number is accepted.
        if (total.ValueKind == JsonValueKind.Number)
        {
            if (total.TryGetInt64(out var exact) && exact >= 0) return exact;
            if (total.TryGetDouble(out var approximate) && approximate >= 0 && approximate < long.MaxValue) return (long)approximate;
        }
        throw new SafetensorsFormatException(path, $"metadata.total_size: expected a non-negative number, found {total.GetRawText()}");
    }
}
