using System.Text;

namespace SharpTune.Export.Gguf;

/// <summary>A tensor's entry in a GGUF file: ggml shape, type, and absolute file offset of its data.</summary>
internal sealed record GgufTensorInfo(string Name, long[] Shape, GgmlType Type, long FileOffset)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteSize => GgmlTypeInfo.RowBytes(Type, Shape[0]) * (ElementCount / Shape[0]);
}

/// <summary>
/// Reads GGUF v2/v3 files: metadata and tensor infos up front, tensor data on demand (dequantized to float32 with the
/// same block decoders the export uses). Validates sizes and offsets before reading data.
/// </summary>
internal sealed class GgufReader
{
    private GgufReader(string path, Dictionary<string, GgufValue> metadata, List<GgufTensorInfo> tensors)
    {
        Path = path;
        Metadata = metadata;
        Tensors = tensors;
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }
    public IReadOnlyList<GgufTensorInfo> Tensors { get; }

    public GgufTensorInfo Tensor(string name) =>
        Tensors.FirstOrDefault(t => t.Name == name) ?? throw new KeyNotFoundException($"{Path}: no tensor '{name}'");

    public static GgufReader Open(string path)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream, Encoding.UTF8);
        string Where() => $"{path} (byte {stream.Position})";
        if (stream.Length < 24 || reader.ReadUInt32() != GgufWriter.Magic)
            throw new InvalidDataException($"{path}: not a GGUF file (magic 'GGUF' missing)");
        var version = reader.ReadUInt32();
        if (version is not (2 or 3)) throw new InvalidDataException($"{path}: GGUF version {version} is not supported (2 and 3 are)");
        var tensorCount = checked((int)reader.ReadUInt64());
        var kvCount = checked((int)reader.ReadUInt64());
        var metadata = new Dictionary<string, GgufValue>(StringComparer.Ordinal);
        for (var i = 0; i < kvCount; i++)
        {
            var key = ReadString(reader, stream, Where);
            var type = (GgufValueType)reader.ReadUInt32();
            metadata[key] = ReadValue(reader, stream, type, Where);
        }
        var infos = new List<(string Name, long[] Shape, GgmlType Type, long Offset)>();
        for (var i = 0; i < tensorCount; i++)
        {
            var name = ReadString(reader, stream, Where);
            var dims = reader.ReadUInt32();
            if (dims is 0 or > 4) throw new InvalidDataException($"{Where()}: tensor '{name}' has {dims} dimensions");
            var shape = new long[dims];
            for (var d = 0; d < dims; d++) shape[d] = checked((long)reader.ReadUInt64());
            var type = (GgmlType)reader.ReadUInt32();
            if (!Enum.IsDefined(type)) throw new InvalidDataException($"{Where()}: tensor '{name}' has ggml type {(uint)type}, which SharpTune does not read");
            infos.Add((name, shape, type, checked((long)reader.ReadUInt64())));
        }
        var alignment = metadata.TryGetValue("general.alignment", out var a) ? a.AsInteger() : GgufWriter.DefaultAlignment;
        var dataStart = (stream.Position + alignment - 1) / alignment * alignment;
        var tensors = infos.Select(t => new GgufTensorInfo(t.Name, t.Shape, t.Type, dataStart + t.Offset)).ToList();
        foreach (var t in tensors)
            if (t.FileOffset + t.ByteSize > stream.Length)
                throw new InvalidDataException($"{path}: tensor '{t.Name}' ends at byte {t.FileOffset + t.ByteSize}, past the end of the file ({stream.Length})");
        return new GgufReader(path, metadata, tensors);
    }

    /// <summary>The raw bytes of a tensor as stored.</summary>
    public byte[] ReadBytes(GgufTensorInfo tensor)
    {
        using var stream = File.OpenRead(Path);
        stream.Position = tensor.FileOffset;
        var bytes = new byte[tensor.ByteSize];
        stream.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>A tensor's values as float32 (dequantized for block types), in ggml order (row-major, ne[0] fastest).</summary>
    public float[] ReadFloat32(string name)
    {
        var tensor = Tensor(name);
        var values = new float[tensor.ElementCount];
        GgmlCodec.Dequantize(tensor.Type, ReadBytes(tensor), values);
        return values;
    }

    private static string ReadString(BinaryReader reader, Stream stream, Func<string> where)
    {
        var length = reader.ReadUInt64();
        if (length > (ulong)(stream.Length - stream.Position)) throw new InvalidDataException($"{where()}: string length {length} runs past the end of the file");
        return Encoding.UTF8.GetString(reader.ReadBytes((int)length));
    }

    private static GgufValue ReadValue(BinaryReader reader, Stream stream, GgufValueType type, Func<string> where) => type switch
    {
        GgufValueType.UInt8 => new(type, reader.ReadByte()),
        GgufValueType.Int8 => new(type, reader.ReadSByte()),
        GgufValueType.UInt16 => new(type, reader.ReadUInt16()),
        GgufValueType.Int16 => new(type, reader.ReadInt16()),
        GgufValueType.UInt32 => new(type, reader.ReadUInt32()),
        GgufValueType.Int32 => new(type, reader.ReadInt32()),
        GgufValueType.Float32 => new(type, reader.ReadSingle()),
        GgufValueType.Bool => new(type, reader.ReadByte() != 0),
        GgufValueType.String => new(type, ReadString(reader, stream, where)),
        GgufValueType.UInt64 => new(type, reader.ReadUInt64()),
        GgufValueType.Int64 => new(type, reader.ReadInt64()),
        GgufValueType.Float64 => new(type, reader.ReadDouble()),
        GgufValueType.Array => ReadArray(reader, stream, where),
        _ => throw new InvalidDataException($"{where()}: unknown GGUF value type {(uint)type}"),
    };

    private static GgufValue ReadArray(BinaryReader reader, Stream stream, Func<string> where)
    {
        var element = (GgufValueType)reader.ReadUInt32();
        var count = reader.ReadUInt64();
        if (count > (ulong)(stream.Length - stream.Position)) throw new InvalidDataException($"{where()}: array of {count} elements runs past the end of the file");
        switch (element)
        {
            case GgufValueType.String:
                var strings = new string[count];
                for (ulong i = 0; i < count; i++) strings[i] = ReadString(reader, stream, where);
                return new GgufValue(GgufValueType.Array, strings, element);
            case GgufValueType.Float32:
                var floats = new float[count];
                for (ulong i = 0; i < count; i++) floats[i] = reader.ReadSingle();
                return new GgufValue(GgufValueType.Array, floats, element);
            case GgufValueType.Int32:
                var ints = new int[count];
                for (ulong i = 0; i < count; i++) ints[i] = reader.ReadInt32();
                return new GgufValue(GgufValueType.Array, ints, element);
            default:
                var items = new object[count];
                for (ulong i = 0; i < count; i++) items[i] = ReadValue(reader, stream, element, where).Value;
                return new GgufValue(GgufValueType.Array, items, element);
        }
    }
}
