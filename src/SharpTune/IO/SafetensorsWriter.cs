using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using TorchSharp;

namespace SharpTune.IO;

/// <summary>Writes safetensors files laid out as the reference implementation lays them out.</summary>
public static class SafetensorsWriter
{
    private sealed record Entry(string Name, torch.Tensor Tensor, SafetensorsDType DType, long[] Shape, long ByteLength);

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/>. As in the reference implementation, data is ordered
    /// by descending dtype width then name (keeping every tensor aligned), <c>__metadata__</c> comes first in the header,
    /// and the header is padded with spaces to a multiple of 8 bytes. Tensors are written one at a time, each through at
    /// most one contiguous CPU copy, to a temporary file in the same folder that then replaces <paramref name="path"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A name is empty or repeated, or a dtype has no safetensors equivalent.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        TensorBytes.EnsureLittleEndianHost();
        var entries = Prepare(tensors);
        var header = BuildHeader(entries, metadata);

        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var entry in entries)
            {
                var before = stream.Position;
                TensorBytes.WriteTo(stream, entry.Tensor);
                if (stream.Position - before != entry.ByteLength)
                    throw new InvalidOperationException($"tensor '{entry.Name}' wrote {stream.Position - before} bytes, expected {entry.ByteLength}");
            }
        });
    }

    /// <summary>The number of data bytes a tensor occupies in a safetensors file.</summary>
    public static long ByteLength(torch.Tensor tensor) =>
        tensor.NumberOfElements * SafetensorsDTypes.FromScalarType(tensor.dtype).ElementSize();

    private static List<Entry> Prepare(IEnumerable<KeyValuePair<string, torch.Tensor>> tensors)
    {
        var entries = new List<Entry>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            if (string.IsNullOrEmpty(name))
                throw new ArgumentException("tensor names must be non-empty", nameof(tensors));
            if (name == SafetensorsHeader.MetadataKey)
                throw new ArgumentException($"'{SafetensorsHeader.MetadataKey}' is reserved and cannot name a tensor", nameof(tensors));
            if (!names.Add(name))
                throw new ArgumentException($"tensor name '{name}' appears more than once", nameof(tensors));
            ArgumentNullException.ThrowIfNull(tensor, $"tensor '{name}'");
            if (!SafetensorsDTypes.TryFromScalarType(tensor.dtype, out var dtype))
                throw new ArgumentException($"tensor '{name}': dtype {tensor.dtype} cannot be stored in safetensors", nameof(tensors));
            entries.Add(new Entry(name, tensor, dtype, tensor.shape, tensor.NumberOfElements * dtype.ElementSize()));
        }
        entries.Sort((left, right) =>
        {
            var byType = right.DType.ReferenceOrder().CompareTo(left.DType.ReferenceOrder());
            return byType != 0 ? byType : string.CompareOrdinal(left.Name, right.Name);
        });
        return entries;
    }

    private static byte[] BuildHeader(List<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            if (metadata is not null)
            {
                json.WriteStartObject(SafetensorsHeader.MetadataKey);
                foreach (var (key, value) in metadata.OrderBy(pair => pair.Key, StringComparer.Ordinal))
                    json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var entry in entries)
            {
                json.WriteStartObject(entry.Name);
                json.WriteString("dtype", entry.DType.ToHeaderString());
                json.WriteStartArray("shape");
                foreach (var dim in entry.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + entry.ByteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += entry.ByteLength;
            }
            json.WriteEndObject();
        }
        var padding = (int)((8 - buffer.Length % 8) % 8);
        for (var i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }
}
