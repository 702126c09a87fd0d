using SharpTune.IO;
using TorchSharp;
using static SharpTune.Tests.IO.TensorTestData;

namespace SharpTune.Tests.IO;

public class SafetensorsRoundTripTests
{
    public static TheoryData<SafetensorsDType> AllDTypes() => new(Enum.GetValues<SafetensorsDType>());

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void EveryDTypeRoundTripsBitExactly(SafetensorsDType dtype)
    {
        using var folder = new TempDir();
        using var original = RandomBits(dtype.ToScalarType(), [3, 5, 7], seed: (int)dtype);
        var path = folder.File("t.safetensors");

        SafetensorsWriter.Write(path, [new("w", original)]);

        using var file = SafetensorsFile.Open(path);
        var info = file.Tensors["w"];
        Assert.Equal(dtype, info.DType);
        Assert.Equal([3L, 5, 7], info.Shape);
        Assert.Equal(3 * 5 * 7 * dtype.ElementSize(), info.ByteLength);
        using var read = file.Read("w");
        Assert.Equal(dtype.ToScalarType(), read.dtype);
        Assert.Equal(original.shape, read.shape);
        Assert.Equal(RawBytes(original), RawBytes(read));
    }

    [Theory]
    [InlineData(torch.ScalarType.BFloat16)]
    [InlineData(torch.ScalarType.Float16)]
    public void HalfPrecisionSpecialValuesKeepTheirBits(torch.ScalarType type)
    {
        // BF16: +0, -0, 1.0, smallest denormal, largest denormal, +Inf, -Inf, quiet NaN, NaN with payload, -NaN.
        // F16 uses the same list of roles with its own encodings.
        ushort[] bits = type == torch.ScalarType.BFloat16
            ? [0x0000, 0x8000, 0x3F80, 0x0001, 0x007F, 0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFC1]
            : [0x0000, 0x8000, 0x3C00, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01];
        using var folder = new TempDir();
        using var original = FromBits16(type, bits);
        var path = folder.File("special.safetensors");
        SafetensorsWriter.Write(path, [new("x", original)]);

        using var file = SafetensorsFile.Open(path);
        using var read = file.Read("x");
        var readBits = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(read.bytes).ToArray();
        Assert.Equal(bits, readBits);
        using var asFloat = file.Read("x", torch.ScalarType.Float32);
        Assert.Equal(1.0f, asFloat[2].item<float>());
        Assert.True(float.IsPositiveInfinity(asFloat[5].item<float>()));
        Assert.True(float.IsNaN(asFloat[7].item<float>()));
    }

    [Fact]
    public void ScalarKeepsEmptyShape()
    {
        using var folder = new TempDir();
        using var scalar = torch.tensor(3.25f);
        using var integer = torch.tensor(-7L);
        var path = folder.File("s.safetensors");
        SafetensorsWriter.Write(path, [new("f", scalar), new("i", integer)]);

        using var file = SafetensorsFile.Open(path);
        Assert.Empty(file.Tensors["f"].Shape);
        using var f = file.Read("f");
        using var i = file.Read("i");
        Assert.Empty(f.shape);
        Assert.Equal(3.25f, f.item<float>());
        Assert.Equal(-7L, i.item<long>());
    }

    [Fact]
    public void EmptyTensorsRoundTripWithTheirShapes()
    {
        using var folder = new TempDir();
        using var empty1 = torch.empty([0], torch.ScalarType.Float32);
        using var empty3 = torch.empty([3, 0, 2], torch.ScalarType.BFloat16);
        using var after = torch.arange(4, dtype: torch.ScalarType.Int32);
        var path = folder.File("e.safetensors");
        SafetensorsWriter.Write(path, [new("a", empty1), new("b", empty3), new("c", after)]);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(file.Tensors["a"].Begin, file.Tensors["a"].End);
        using var a = file.Read("a");
        using var b = file.Read("b");
        using var c = file.Read("c");
        Assert.Equal([0L], a.shape);
        Assert.Equal([3L, 0, 2], b.shape);
        Assert.Equal([0, 1, 2, 3], c.data<int>().ToArray());
    }

    [Fact]
    public void NonContiguousAndOffsetViewsAreWrittenInLogicalOrder()
    {
        using var folder = new TempDir();
        using var baseTensor = torch.arange(12, dtype: torch.ScalarType.Float32).reshape(3, 4);
        using var transposed = baseTensor.t();                 // (4, 3), strides (1, 4)
        using var offsetRows = baseTensor.narrow(0, 1, 2);      // contiguous, storage offset 4
        using var everyOther = baseTensor.slice(1, 0, 4, 2);    // (3, 2), strided
        Assert.False(transposed.is_contiguous());
        var path = folder.File("nc.safetensors");
        SafetensorsWriter.Write(path, [new("t", transposed), new("rows", offsetRows), new("cols", everyOther)]);

        using var file = SafetensorsFile.Open(path);
        using var t = file.Read("t");
        using var rows = file.Read("rows");
        using var cols = file.Read("cols");
        Assert.Equal([0f, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11], t.data<float>().ToArray());
        Assert.Equal([4f, 5, 6, 7, 8, 9, 10, 11], rows.data<float>().ToArray());
        Assert.Equal([0f, 2, 4, 6, 8, 10], cols.data<float>().ToArray());
    }

    [Fact]
    public void ReadConvertsDTypeOnRequest()
    {
        using var folder = new TempDir();
        using var values = torch.tensor(new[] { 1.5f, -2f, 0.25f }).to_type(torch.ScalarType.BFloat16);
        var path = folder.File("c.safetensors");
        SafetensorsWriter.Write(path, [new("v", values)]);

        using var file = SafetensorsFile.Open(path);
        using var asFloat = file.Read("v", torch.ScalarType.Float32, torch.CPU);
        Assert.Equal(torch.ScalarType.Float32, asFloat.dtype);
        Assert.Equal([1.5f, -2f, 0.25f], asFloat.data<float>().ToArray());
    }

    [Fact]
    public void MetadataRoundTrips()
    {
        using var folder = new TempDir();
        using var x = torch.zeros(2);
        var path = folder.File("m.safetensors");
        SafetensorsWriter.Write(path, [new("x", x)], new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\"" });

        using var file = SafetensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal("ünïcode \"quoted\"", file.Metadata["note"]);
    }

    [Fact]
    public void OverwritingReplacesTheFileAndLeavesNoTemporaryFiles()
    {
        using var folder = new TempDir();
        var path = folder.File("o.safetensors");
        using var first = torch.ones(4);
        using var second = torch.zeros(2, dtype: torch.ScalarType.Int64);
        SafetensorsWriter.Write(path, [new("a", first)]);
        SafetensorsWriter.Write(path, [new("b", second)]);

        Assert.Equal(["o.safetensors"], Directory.GetFiles(folder.Path).Select(Path.GetFileName));
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["b"], file.Tensors.Keys);
    }

    [Fact]
    public void WriterRejectsBadNamesAndDTypes()
    {
        using var folder = new TempDir();
        var path = folder.File("bad.safetensors");
        using var x = torch.zeros(2);
        using var complex = torch.zeros(2, dtype: torch.ScalarType.ComplexFloat32);

        Assert.Contains("more than once", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("a", x), new("a", x)])).Message);
        Assert.Contains("non-empty", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("", x)])).Message);
        Assert.Contains("ComplexFloat32", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [new("c", complex)])).Message);
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(folder.Path));
    }

    [Fact]
    public void ReadingAnUnknownNameNamesTheFile()
    {
        using var folder = new TempDir();
        var path = folder.File("k.safetensors");
        using var x = torch.zeros(2);
        SafetensorsWriter.Write(path, [new("x", x)]);
        using var file = SafetensorsFile.Open(path);
        var error = Assert.Throws<KeyNotFoundException>(() => file.Read("y"));
        Assert.Contains(path, error.Message);
        Assert.Contains("'y'", error.Message);
    }

    [Fact]
    public void LargeTensorReadsAndWritesInChunks()
    {
        using var folder = new TempDir();
        var path = folder.File("big.safetensors");
        // 64 MiB of float32 with a pattern that catches a chunk written or read at the wrong offset.
        using var big = torch.arange(16L * 1024 * 1024, dtype: torch.ScalarType.Int32).to_type(torch.ScalarType.Float32).reshape(4096, 4096);
        SafetensorsWriter.Write(path, [new("big", big)]);

        using var file = SafetensorsFile.Open(path);
        // 1 MiB + 4 bytes per chunk: chunks straddle rows and the last chunk is partial.
        using var chunked = file.Read("big", null, null, maxChunkBytes: (1 << 20) + 4);
        using var whole = file.Read("big");
        Assert.True(AllEqual(chunked, big));
        Assert.True(AllEqual(whole, big));
    }

    [Fact]
    public void ChunkedWriteMatchesTheTensorBytes()
    {
        using var tensor = RandomBits(torch.ScalarType.BFloat16, [1001], seed: 5);
        using var stream = new MemoryStream();
        TensorBytes.WriteTo(stream, tensor, maxChunkBytes: 63);   // 31 elements per chunk, last one partial
        Assert.Equal(RawBytes(tensor), stream.ToArray());
    }

    [Fact]
    public void TryReadIntoFillsAMatchingTensorInPlaceAndRefusesOtherDtypesOrShapes()
    {
        using var folder = new TempDir();
        using var original = RandomBits(torch.ScalarType.BFloat16, [4, 6], seed: 11);
        var path = folder.File("t.safetensors");
        SafetensorsWriter.Write(path, [new("w", original)]);
        using var file = SafetensorsFile.Open(path);

        using var destination = torch.zeros([4, 6], torch.ScalarType.BFloat16);
        Assert.True(file.TryReadInto("w", destination));
        Assert.Equal(RawBytes(original), RawBytes(destination));           // the given tensor itself now holds the data

        using var otherDtype = torch.zeros([4, 6], torch.ScalarType.Float32);
        Assert.False(file.TryReadInto("w", otherDtype));
        Assert.True(otherDtype.eq(0).all().item<bool>());                   // untouched
        using var otherShape = torch.zeros([6, 4], torch.ScalarType.BFloat16);
        Assert.False(file.TryReadInto("w", otherShape));
        using var strided = torch.zeros([6, 4], torch.ScalarType.BFloat16).t();
        Assert.False(file.TryReadInto("w", strided));                       // not contiguous
        Assert.Throws<KeyNotFoundException>(() => file.TryReadInto("missing", destination));
    }
}
