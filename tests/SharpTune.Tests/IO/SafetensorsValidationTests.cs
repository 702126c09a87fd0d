using System.Buffers.Binary;
using SharpTune.IO;
using TorchSharp;
using static SharpTune.Tests.IO.SafetensorsSpecTests;

namespace SharpTune.Tests.IO;

/// <summary>Malformed files are rejected with a <see cref="SafetensorsFormatException"/> naming the file and the
/// field at fault, before any tensor data is read.</summary>
public class SafetensorsValidationTests
{
    private static SafetensorsFormatException Rejected(byte[] fileBytes)
    {
        using var folder = new TempDir();
        var path = folder.File("bad.safetensors");
        File.WriteAllBytes(path, fileBytes);
        var error = Assert.Throws<SafetensorsFormatException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(path, error.Message);
        Assert.Equal(path, error.FilePath);
        return error;
    }

    private static SafetensorsFormatException RejectedHeader(string headerJson, int dataBytes) =>
        Rejected(Assemble(headerJson, new byte[dataBytes]));

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    public void FileShorterThanTheLengthFieldIsRejected(int length)
    {
        Assert.Contains("at least 8", Rejected(new byte[length]).Message);
    }

    [Theory]
    [InlineData(100_000_001UL, "exceeds the limit")]
    [InlineData(ulong.MaxValue, "exceeds the limit")]
    [InlineData(1UL << 63, "exceeds the limit")]
    [InlineData(1000UL, "exceeds the 10 bytes")]
    public void AbsurdHeaderLengthsAreRejectedWithoutAllocating(ulong declared, string expected)
    {
        var bytes = new byte[18];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declared);
        Assert.Contains(expected, Rejected(bytes).Message);
    }

    [Theory]
    [InlineData("[]", "expected a JSON object")]
    [InlineData("\"text\"", "expected a JSON object")]
    [InlineData("42", "expected a JSON object")]
    [InlineData("null", "expected a JSON object")]
    [InlineData("{\"a\":", "not valid UTF-8 JSON")]
    [InlineData("", "not valid UTF-8 JSON")]
    [InlineData("{} trailing", "not valid UTF-8 JSON")]
    public void HeaderThatIsNotAJsonObjectIsRejected(string header, string expected)
    {
        Assert.Contains(expected, RejectedHeader(header, 0).Message);
    }

    [Fact]
    public void InvalidUtf8IsRejected()
    {
        var header = "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}"u8.ToArray();
        header[2] = 0xFF;
        var file = new byte[8 + header.Length + 1];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        Assert.Contains("not valid UTF-8 JSON", Rejected(file).Message);
    }

    [Theory]
    [InlineData("""{"w":5}""", 0, "tensor 'w'", "expected an object")]
    [InlineData("""{"w":{"shape":[1],"data_offsets":[0,4]}}""", 4, "'dtype' is missing", "")]
    [InlineData("""{"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}""", 1, "tensor 'w'", "found \"F8_E4M3\"")]
    [InlineData("""{"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}""", 4, "field 'dtype'", "found \"f32\"")]
    [InlineData("""{"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}}""", 4, "field 'dtype'", "the number 7")]
    [InlineData("""{"w":{"dtype":"F32","data_offsets":[0,4]}}""", 4, "'shape' is missing", "")]
    [InlineData("""{"w":{"dtype":"F32","shape":{},"data_offsets":[0,4]}}""", 4, "field 'shape'", "an object")]
    [InlineData("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "'shape'[0]", "the number -1")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}""", 4, "'shape'[0]", "1.5")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1e30],"data_offsets":[0,4]}}""", 4, "'shape'[0]", "1e30")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}""", 4, "tensor 'w'", "too large")]
    [InlineData("""{"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}""", 0, "tensor 'w'", "too large")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1]}}""", 4, "'data_offsets' is missing", "")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}""", 4, "'data_offsets'", "expected [begin, end]")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}""", 8, "'data_offsets'", "expected [begin, end]")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}""", 4, "data_offsets begin", "-4")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}""", 8, "tensor 'w'", "begin 8 is after end 4")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 3, "tensor 'w'", "beyond the data section (3 bytes)")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551615]}}""", 4, "data_offsets end", "18446744073709551615")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""", 4, "tensor 'w'", "needs 8 bytes, found data_offsets spanning 4")]
    [InlineData("""{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "needs 6 bytes")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "overlap", "[0, 8)")]
    [InlineData("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""", 2, "tensor 'a'", "twice")]
    [InlineData("""{"__metadata__":{"format":1}}""", 0, "'__metadata__' key 'format'", "the number 1")]
    [InlineData("""{"__metadata__":[]}""", 0, "'__metadata__'", "expected an object")]
    [InlineData("""{"__metadata__":{"k":{"nested":"x"}}}""", 0, "'__metadata__' key 'k'", "an object")]
    public void MalformedEntriesNameTheTensorAndField(string header, int dataBytes, string field, string found)
    {
        var message = RejectedHeader(header, dataBytes).Message;
        Assert.Contains(field, message);
        Assert.Contains(found, message);
    }

    [Fact]
    public void ZeroSizeTensorsMayShareAnOffset()
    {
        using var folder = new TempDir();
        var path = folder.File("zero.safetensors");
        File.WriteAllBytes(path, Assemble(
            """{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"c":{"dtype":"I8","shape":[2,0],"data_offsets":[4,4]}}""",
            new byte[4]));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(3, file.Tensors.Count);
    }

    [Fact]
    public void FuzzedFilesNeverFailWithAnythingButAFormatException()
    {
        using var folder = new TempDir();
        var valid = folder.File("valid.safetensors");
        using (var w = TensorTestData.RandomBits(torch.ScalarType.BFloat16, [3, 4], seed: 1))
        using (var b = TensorTestData.RandomBits(torch.ScalarType.Float32, [5], seed: 2))
        using (var s = torch.tensor(9L))
        using (var e = torch.empty([0, 3], torch.ScalarType.Int16))
        using (var last = torch.tensor(new byte[] { 1, 2, 3 }))
            SafetensorsWriter.Write(valid, [new("w", w), new("b", b), new("s", s), new("e", e), new("last.u8", last)],
                new Dictionary<string, string> { ["format"] = "pt" });
        var original = File.ReadAllBytes(valid);
        var headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(original);
        var rng = new Random(20240611);
        var mutated = folder.File("mutated.safetensors");
        var rejected = 0;

        // Every truncation point: the data section shrinks below the last tensor's end, so each must be rejected.
        for (var cut = 0; cut < original.Length; cut++)
        {
            File.WriteAllBytes(mutated, original[..cut]);
            Assert.True(OpenAndReadAll(mutated), $"truncated at {cut} of {original.Length} bytes was accepted");
            rejected++;
        }

        // Random byte changes in the length field and header; the outcome may be a still-valid file, never a crash.
        for (var round = 0; round < 400; round++)
        {
            var bytes = (byte[])original.Clone();
            var flips = rng.Next(1, 4);
            for (var i = 0; i < flips; i++)
            {
                var at = rng.Next(0, headerEnd);
                bytes[at] = rng.Next(3) switch
                {
                    0 => (byte)(bytes[at] ^ (1 << rng.Next(8))),
                    1 => (byte)rng.Next(256),
                    _ => (byte)"{}[]\",:0123456789-. e"[rng.Next(21)],
                };
            }
            File.WriteAllBytes(mutated, bytes);
            if (OpenAndReadAll(mutated)) rejected++;
        }
        Assert.True(rejected > original.Length + 300, $"only {rejected - original.Length} of 400 header mutations were rejected");
    }

    /// <summary>True when the file was rejected with a format exception naming it; false when it was read in full.
    /// Any other exception fails the test.</summary>
    private static bool OpenAndReadAll(string path)
    {
        try
        {
            using var file = SafetensorsFile.Open(path);
            foreach (var name in file.Tensors.Keys)
            {
                using var tensor = file.Read(name);
                Assert.Equal(file.Tensors[name].Shape, tensor.shape);
            }
            return false;
        }
        catch (SafetensorsFormatException e)
        {
            Assert.Contains(path, e.Message);
            return true;
        }
    }
}
