using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Peft;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft;

/// <summary>
/// A minimal F32-only safetensors reader/writer written from the format's specification (8-byte little-endian header
/// length, JSON header {name: {dtype, shape, data_offsets}, "__metadata__"}, then raw little-endian data), so the
/// adapter tests can check the on-disk layout independently of the library's own safetensors code.
/// </summary>
internal sealed class F32SafetensorsStore : IAdapterTensorStore
{
    public static readonly F32SafetensorsStore Instance = new();

    public void Write(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        var header = new JsonObject { ["__metadata__"] = new JsonObject(metadata.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))) };
        var data = new MemoryStream();
        Span<byte> bytes = stackalloc byte[4];
        foreach (var (name, tensor) in tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            using var scope = NewDisposeScope();
            var values = tensor.numel() == 0 ? [] : tensor.detach().to(ScalarType.Float32).contiguous().data<float>().ToArray();   // e.g. a rank-0 layer's [0, in]
            var begin = data.Length;
            foreach (var v in values)
            {
                BinaryPrimitives.WriteSingleLittleEndian(bytes, v);
                data.Write(bytes);
            }
            header[name] = new JsonObject
            {
                ["dtype"] = "F32",
                ["shape"] = new JsonArray(tensor.shape.Select(d => (JsonNode)JsonValue.Create(d)).ToArray()),
                ["data_offsets"] = new JsonArray(begin, data.Length),
            };
        }
        var headerBytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        using var file = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerBytes.Length);
        file.Write(length);
        file.Write(headerBytes);
        data.Position = 0;
        data.CopyTo(file);
    }

    public IReadOnlyDictionary<string, Tensor> Read(string path) =>
        ReadHeader(path).Tensors.ToDictionary(t => t.Name, t => tensor(t.Values, t.Shape));

    /// <summary>The header's metadata and every tensor's name, shape and values, exactly as stored.</summary>
    public static (Dictionary<string, string> Metadata, List<(string Name, long[] Shape, float[] Values)> Tensors) ReadHeader(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = JsonNode.Parse(Encoding.UTF8.GetString(bytes, 8, headerLength))!.AsObject();
        var dataStart = 8 + headerLength;
        var metadata = new Dictionary<string, string>();
        var tensors = new List<(string, long[], float[])>();
        foreach (var (name, node) in header)
        {
            if (name == "__metadata__")
            {
                foreach (var (k, v) in node!.AsObject()) metadata[k] = v!.GetValue<string>();
                continue;
            }
            Assert.Equal("F32", node!["dtype"]!.GetValue<string>());
            var shape = node["shape"]!.AsArray().Select(d => d!.GetValue<long>()).ToArray();
            var offsets = node["data_offsets"]!.AsArray().Select(d => d!.GetValue<long>()).ToArray();
            Assert.Equal(shape.Aggregate(1L, (a, b) => a * b) * 4, offsets[1] - offsets[0]);
            var values = new float[(offsets[1] - offsets[0]) / 4];
            for (var i = 0; i < values.Length; i++)
                values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(dataStart + (int)offsets[0] + 4 * i));
            tensors.Add((name, shape, values));
        }
        return (metadata, tensors);
    }
}
