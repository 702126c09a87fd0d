using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using SharpTune.IO;
using TorchSharp;

namespace SharpTune.Tests.IO;

/// <summary>Checks against the format itself (8-byte LE length, JSON header, raw LE data), with files assembled and
/// parsed by hand rather than through our own reader or writer.</summary>
public class SafetensorsSpecTests
{
    internal static byte[] Assemble(string headerJson, byte[] data)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Length);
        return file;
    }

    [Fact]
    public void ReadsAHandAssembledFile()
    {
        // Unpadded header (odd length), metadata last, keys not sorted: all allowed by the format.
        const string header = """{"weight":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"half":{"dtype":"BF16","shape":[2,1],"data_offsets":[16,20]},"step":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}""";
        byte[] data =
        [
            0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,   // I64 -3
            0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x20, 0xC0,   // F32 1.0, -2.5
            0x80, 0x3F, 0x00, 0xC0,                           // BF16 1.0 (0x3F80), -2.0 (0xC000)
        ];
        using var folder = new TempDir();
        var path = folder.File("hand.safetensors");
        File.WriteAllBytes(path, Assemble(header, data));

        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        var halfInfo = file.Tensors["half"];
        Assert.Equal((SafetensorsDType.BF16, 16L, 20L), (halfInfo.DType, halfInfo.Begin, halfInfo.End));
        Assert.Equal([2L, 1], halfInfo.Shape);
        using var step = file.Read("step");
        using var weight = file.Read("weight");
        using var half = file.Read("half");
        using var halfAsFloat = half.to_type(torch.ScalarType.Float32);
        Assert.Empty(step.shape);
        Assert.Equal(-3L, step.item<long>());
        Assert.Equal([1.0f, -2.5f], weight.data<float>().ToArray());
        Assert.Equal([2L, 1], half.shape);
        Assert.Equal([1.0f, -2.0f], halfAsFloat.data<float>().ToArray());
    }

    [Fact]
    public void ReadsAHeaderPaddedWithSpaces()
    {
        var header = """{"x":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}""";
        header = header.PadRight((header.Length + 7) / 8 * 8 + 8);
        using var folder = new TempDir();
        var path = folder.File("padded.safetensors");
        File.WriteAllBytes(path, Assemble(header, [7, 8, 9]));

        using var file = SafetensorsFile.Open(path);
        using var x = file.Read("x");
        Assert.Equal(torch.ScalarType.Byte, x.dtype);
        Assert.Equal(new byte[] { 7, 8, 9 }, x.data<byte>().ToArray());
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void WritesTheSameHeaderBytesAsTheReferenceLibrary()
    {
        // The Python library's save_file({"a": torch.zeros(2)}, metadata={"format": "pt"}) writes compact serde_json
        // with fields in TensorInfo's order (dtype, shape, data_offsets), __metadata__ first, padded with spaces to 8.
        const string expectedJson = """{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";
        using var folder = new TempDir();
        var path = folder.File("ref.safetensors");
        using var zeros = torch.zeros(2);
        SafetensorsWriter.Write(path, [new("a", zeros)], new Dictionary<string, string> { ["format"] = "pt" });

        var bytes = File.ReadAllBytes(path);
        var length = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(88, length);   // 85 bytes of JSON + 3 spaces
        Assert.Equal(expectedJson + "   ", Encoding.UTF8.GetString(bytes, 8, length));
        Assert.Equal(new byte[8], bytes[(8 + length)..]);
    }

    [Fact]
    public void WriterOutputFollowsTheSpec()
    {
        using var folder = new TempDir();
        var path = folder.File("spec.safetensors");
        using var b = torch.tensor(new[] { 1.5f, -0.25f });
        using var a = torch.tensor(new[] { 3f });
        using var z = torch.tensor(new[] { long.MinValue });
        using var m = torch.tensor(new[] { 1f, 2f, 3f }).to_type(torch.ScalarType.BFloat16);
        using var u = torch.tensor(new byte[] { 200 });
        using var flag = torch.tensor(new[] { true, false });
        SafetensorsWriter.Write(path, [new("b", b), new("a", a), new("z", z), new("m", m), new("u", u), new("flag", flag)],
            new Dictionary<string, string> { ["format"] = "pt" });

        var bytes = File.ReadAllBytes(path);
        var headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, headerLength % 8);
        var headerText = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        var json = headerText.TrimEnd(' ');
        Assert.EndsWith("}", json);
        Assert.True(headerText.Length - json.Length < 8);

        using var document = JsonDocument.Parse(json);
        var properties = document.RootElement.EnumerateObject().ToList();
        Assert.Equal("__metadata__", properties[0].Name);
        // Descending dtype width as the reference orders its Dtype enum (I64 > F32 > BF16 > U8 > BOOL), then name.
        Assert.Equal(["z", "a", "b", "m", "u", "flag"], properties.Skip(1).Select(p => p.Name));
        long expectedBegin = 0;
        foreach (var property in properties.Skip(1))
        {
            var offsets = property.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(expectedBegin, offsets[0]);
            expectedBegin = offsets[1];
        }
        var dataStart = 8 + (int)headerLength;
        Assert.Equal(expectedBegin, bytes.Length - dataStart);

        byte[] expectedData =
        [
            .. BitConverter.GetBytes(long.MinValue),
            .. BitConverter.GetBytes(3f),
            .. BitConverter.GetBytes(1.5f), .. BitConverter.GetBytes(-0.25f),
            0x80, 0x3F, 0x00, 0x40, 0x40, 0x40,   // BF16 1, 2, 3 = 0x3F80, 0x4000, 0x4040
            200,
            1, 0,
        ];
        Assert.Equal(expectedData, bytes[dataStart..]);
        Assert.Equal("BF16", properties.Single(p => p.Name == "m").Value.GetProperty("dtype").GetString());
        Assert.Equal("BOOL", properties.Single(p => p.Name == "flag").Value.GetProperty("dtype").GetString());
    }
}
