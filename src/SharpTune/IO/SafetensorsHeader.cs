using System.Text.Json;

namespace SharpTune.IO;

/// <summary>Parses and validates a safetensors JSON header against the size of the data section that follows it.
/// Nothing here touches tensor data, so a hostile file is rejected before any allocation it asks for.</summary>
internal static class SafetensorsHeader
{
    /// <summary>The reference implementation's limit on the header length.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public const string MetadataKey = "__metadata__";

    public sealed record Parsed(Dictionary<string, SafetensorsTensorInfo> Tensors, Dictionary<string, string> Metadata);

    public static Parsed Parse(string path, ReadOnlyMemory<byte> json, long dataLength)
    {
        // JsonDocument defers UTF-8 validation of string contents until they are read, so check it all first.
        if (!System.Text.Unicode.Utf8.IsValid(json.Span))
            throw new SafetensorsFormatException(path, "header is not valid UTF-8 JSON (invalid UTF-8 bytes)");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new SafetensorsFormatException(path, $"header is not valid UTF-8 JSON ({e.Message})", e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException(path, $"header: expected a JSON object, found {Describe(root)}");

            var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seenMetadata = false;
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                {
                    if (seenMetadata)
                        throw new SafetensorsFormatException(path, $"header: '{MetadataKey}' appears twice");
                    seenMetadata = true;
                    ReadMetadata(path, property.Value, metadata);
                    continue;
                }
                if (tensors.ContainsKey(property.Name))
                    throw new SafetensorsFormatException(path, $"tensor '{property.Name}': appears twice in the header");
                tensors.Add(property.Name, ReadTensor(path, property.Name, property.Value, dataLength));
            }
            CheckNoOverlap(path, tensors.Values);
            return new Parsed(tensors, metadata);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(path, $"'{MetadataKey}': expected an object of string values, found {Describe(value)}");
        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
                throw new SafetensorsFormatException(path, $"'{MetadataKey}' key '{entry.Name}': expected a string, found {Describe(entry.Value)}");
            if (!metadata.TryAdd(entry.Name, entry.Value.GetString()!))
                throw new SafetensorsFormatException(path, $"'{MetadataKey}' key '{entry.Name}': appears twice");
        }
    }

    private static SafetensorsTensorInfo ReadTensor(string path, string name, JsonElement entry, long dataLength)
    {
        if (entry.ValueKind != JsonValueKind.Object)
            throw new SafetensorsFormatException(path, $"tensor '{name}': expected an object with dtype, shape and data_offsets, found {Describe(entry)}");

        var dtypeText = RequiredField(path, name, entry, "dtype", JsonValueKind.String, "a dtype string").GetString()!;
        if (!SafetensorsDTypes.TryParseHeaderString(dtypeText, out var dtype))
            throw new SafetensorsFormatException(path,
                $"tensor '{name}': field 'dtype' expected one of {string.Join(", ", Enum.GetNames<SafetensorsDType>())}, found \"{Truncate(dtypeText)}\"");

        var shapeElement = RequiredField(path, name, entry, "shape", JsonValueKind.Array, "an array of non-negative integers");
        var shape = new long[shapeElement.GetArrayLength()];
        var index = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out var size) || size < 0)
                throw new SafetensorsFormatException(path, $"tensor '{name}': field 'shape'[{index}] expected a non-negative integer, found {Describe(dim)}");
            shape[index++] = size;
        }

        var offsets = RequiredField(path, name, entry, "data_offsets", JsonValueKind.Array, "[begin, end]");
        if (offsets.GetArrayLength() != 2)
            throw new SafetensorsFormatException(path, $"tensor '{name}': field 'data_offsets' expected [begin, end], found {Describe(offsets)}");
        var begin = ReadOffset(path, name, offsets[0], "begin");
        var end = ReadOffset(path, name, offsets[1], "end");
        if (begin > end)
            throw new SafetensorsFormatException(path, $"tensor '{name}': data_offsets begin {begin} is after end {end}");
        if (end > dataLength)
            throw new SafetensorsFormatException(path, $"tensor '{name}': data_offsets end {end} lies beyond the data section ({dataLength} bytes)");

        var expectedBytes = ExpectedByteLength(path, name, shape, dtype);
        if (expectedBytes != end - begin)
            throw new SafetensorsFormatException(path,
                $"tensor '{name}': {dtype} shape [{string.Join(", ", shape)}] needs {expectedBytes} bytes, found data_offsets spanning {end - begin}");
        return new SafetensorsTensorInfo(name, dtype, shape, begin, end);
    }

    private static long ExpectedByteLength(string path, string name, long[] shape, SafetensorsDType dtype)
    {
        // Strides are products of the non-zero dims, so those must fit in a long even when some dim is 0.
        long strideProduct = 1, elements = 1;
        try
        {
            foreach (var dim in shape)
            {
                strideProduct = checked(strideProduct * Math.Max(dim, 1));
                elements *= dim;
            }
            return checked(elements * dtype.ElementSize());
        }
        catch (OverflowException)
        {
            throw new SafetensorsFormatException(path, $"tensor '{name}': shape [{string.Join(", ", shape)}] is too large (element count overflows)");
        }
    }

    private static JsonElement RequiredField(string path, string name, JsonElement entry, string field, JsonValueKind kind, string expected)
    {
        if (!entry.TryGetProperty(field, out var value))
            throw new SafetensorsFormatException(path, $"tensor '{name}': field '{field}' is missing (expected {expected})");
        if (value.ValueKind != kind)
            throw new SafetensorsFormatException(path, $"tensor '{name}': field '{field}' expected {expected}, found {Describe(value)}");
        return value;
    }

    private static long ReadOffset(string path, string name, JsonElement value, string which)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var offset) || offset < 0)
            throw new SafetensorsFormatException(path, $"tensor '{name}': data_offsets {which} expected a non-negative integer, found {Describe(value)}");
        return offset;
    }

    private static void CheckNoOverlap(string path, IEnumerable<SafetensorsTensorInfo> tensors)
    {
        SafetensorsTensorInfo? previous = null;
        foreach (var tensor in tensors.Where(t => t.End > t.Begin).OrderBy(t => t.Begin))
        {
            if (previous is not null && tensor.Begin < previous.End)
                throw new SafetensorsFormatException(path,
                    $"tensor '{tensor.Name}': bytes [{tensor.Begin}, {tensor.End}) overlap tensor '{previous.Name}' at [{previous.Begin}, {previous.End})");
            previous = tensor;
        }
    }

    private static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => $"an array {Truncate(value.GetRawText())}",
        JsonValueKind.String => $"the string \"{Truncate(value.GetString()!)}\"",
        JsonValueKind.Number => $"the number {Truncate(value.GetRawText())}",
        JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        JsonValueKind.Null => "null",
        _ => value.ValueKind.ToString(),
    };

    private static string Truncate(string text) => text.Length <= 80 ? text : text[..77] + "...";
}
