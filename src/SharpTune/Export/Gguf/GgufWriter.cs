using System.Text;
using SharpTune.IO;

namespace SharpTune.Export.Gguf;

/// <summary>A tensor to write: its GGUF name, ggml shape (ne[0] = row length first), type, and a producer of its bytes.</summary>
/// <param name="Shape">ggml dimension order: the reverse of the PyTorch/NumPy shape.</param>
/// <param name="WriteData">Writes exactly <see cref="ByteSize"/> bytes; called once, while the file is written.</param>
internal sealed record GgufTensor(string Name, long[] Shape, GgmlType Type, Action<Stream> WriteData)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    public long ByteSize => GgmlTypeInfo.RowBytes(Type, Shape[0]) * (ElementCount / Shape[0]);
}

/// <summary>
/// Writes GGUF version 3 files (the layout gguf-py's GGUFWriter and ggml's gguf.cpp use): magic "GGUF", version, tensor and
/// key-value counts, the key-values, the tensor infos (name, dims, type, offset), padding to the alignment, then each
/// tensor's data at an aligned offset. Little-endian throughout; the file appears atomically.
/// </summary>
internal static class GgufWriter
{
    public const uint Magic = 0x46554747; // "GGUF"
    public const uint Version = 3;
    public const int DefaultAlignment = 32;

    /// <summary>
    /// Refuses an output path that names a folder or a file that is not a GGUF file: a re-export replaces an earlier
    /// export, but a mistyped <c>--out</c> must not replace someone's data with model bytes.
    /// </summary>
    /// <exception cref="IOException">The path is a folder or holds a file of another kind.</exception>
    public static void EnsureReplaceable(string path)
    {
        if (Directory.Exists(path)) throw new IOException($"{path} is a folder; give the path of the .gguf file to write");
        if (!File.Exists(path)) return;
        Span<byte> head = stackalloc byte[4];
        using (var existing = File.OpenRead(path))
            if (existing.ReadAtLeast(head, 4, throwOnEndOfStream: false) == 4 && BitConverter.ToUInt32(head) == Magic) return;
        throw new IOException($"{path} exists and is not a GGUF file; refusing to replace it (remove it or choose another path)");
    }

    public static void Write(string path, IReadOnlyList<KeyValuePair<string, GgufValue>> metadata, IReadOnlyList<GgufTensor> tensors)
    {
        EnsureReplaceable(path);
        var duplicate = metadata.GroupBy(kv => kv.Key).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"GGUF metadata key '{duplicate.Key}' is set twice");
        var duplicateTensor = tensors.GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicateTensor is not null) throw new ArgumentException($"GGUF tensor '{duplicateTensor.Key}' is written twice");
        var alignment = metadata.FirstOrDefault(kv => kv.Key == "general.alignment").Value is { } a ? (int)a.AsInteger() : DefaultAlignment;

        AtomicFile.Write(path, stream =>
        {
            var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(Magic);
            writer.Write(Version);
            writer.Write((ulong)tensors.Count);
            writer.Write((ulong)metadata.Count);
            foreach (var (key, value) in metadata)
            {
                WriteString(writer, key);
                writer.Write((uint)value.Type);
                WriteValue(writer, value, key);
            }
            long offset = 0;
            foreach (var tensor in tensors)
            {
                WriteString(writer, tensor.Name);
                writer.Write((uint)tensor.Shape.Length);
                foreach (var dim in tensor.Shape) writer.Write((ulong)dim);
                writer.Write((uint)tensor.Type);
                writer.Write((ulong)offset);
                offset = Align(offset + tensor.ByteSize, alignment);
            }
            writer.Flush();
            Pad(stream, alignment);
            var dataStart = stream.Position;
            foreach (var tensor in tensors)
            {
                var before = stream.Position;
                tensor.WriteData(stream);
                var written = stream.Position - before;
                if (written != tensor.ByteSize)
                    throw new InvalidOperationException($"tensor '{tensor.Name}': wrote {written} bytes, its type and shape need {tensor.ByteSize}");
                Pad(stream, alignment, dataStart);
            }
        });
    }

    private static long Align(long value, int alignment) => (value + alignment - 1) / alignment * alignment;

    private static void Pad(Stream stream, int alignment, long origin = 0)
    {
        var padding = Align(stream.Position - origin, alignment) - (stream.Position - origin);
        for (var i = 0; i < padding; i++) stream.WriteByte(0);
    }

    private static void WriteString(BinaryWriter writer, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        writer.Write((ulong)bytes.Length);
        writer.Write(bytes);
    }

    private static void WriteValue(BinaryWriter writer, GgufValue value, string key)
    {
        switch (value.Type)
        {
            case GgufValueType.Array:
                writer.Write((uint)value.ElementType);
                switch (value.Value)
                {
                    case IReadOnlyList<string> strings:
                        writer.Write((ulong)strings.Count);
                        foreach (var s in strings) WriteString(writer, s);
                        break;
                    case IReadOnlyList<float> floats:
                        writer.Write((ulong)floats.Count);
                        foreach (var f in floats) writer.Write(f);
                        break;
                    case IReadOnlyList<int> ints:
                        writer.Write((ulong)ints.Count);
                        foreach (var i in ints) writer.Write(i);
                        break;
                    default:
                        throw new ArgumentException($"GGUF key '{key}': unsupported array element type {value.ElementType}");
                }
                break;
            case GgufValueType.String: WriteString(writer, value.AsString()); break;
            case GgufValueType.UInt32: writer.Write((uint)value.Value); break;
            case GgufValueType.Int32: writer.Write((int)value.Value); break;
            case GgufValueType.Float32: writer.Write((float)value.Value); break;
            case GgufValueType.Bool: writer.Write((bool)value.Value ? (byte)1 : (byte)0); break;
            case GgufValueType.UInt64: writer.Write((ulong)value.Value); break;
            default: throw new ArgumentException($"GGUF key '{key}': unsupported value type {value.Type}");
        }
    }
}
