using System.Text;
using SharpTune.Server.Batches;

namespace SharpTune.Tests.Server.Batches;

/// <summary>The batch file's own strictness, beyond the shared JSONL reader's defaults: UTF-8 only, no repeated keys.</summary>
public sealed class BatchInputFileTests
{
    private static readonly string[] Endpoints = ["/v1/chat/completions"];

    private static string Request(string id) =>
        $$$"""{"custom_id":"{{{id}}}","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}""";

    [Fact]
    public void InvalidUtf8IsRefusedNamingTheLineThatHoldsIt()
    {
        using var dir = new TempDir();
        var path = dir.File("batch.jsonl");
        // Three short lines share one read buffer: the error must still fall on the third, not on the line being read.
        File.WriteAllBytes(path, [.. Encoding.UTF8.GetBytes(Request("a") + "\n" + Request("b") + "\n"),
            .. Encoding.UTF8.GetBytes(Request("c"))[..20], 0xFF, .. "\"}\n"u8.ToArray()]);
        var error = Assert.Throws<BatchFileException>(() => BatchInputFile.Read(path, Endpoints));
        Assert.Equal("line 3: the line is not valid UTF-8", error.Message);
    }

    [Fact]
    public void ARepeatedKeyIsRefusedNamingTheLine()
    {
        using var dir = new TempDir();
        var path = dir.File("batch.jsonl", Request("a") + "\n" +
            """{"custom_id":"b","custom_id":"c","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}""" + "\n");
        var error = Assert.Throws<BatchFileException>(() => BatchInputFile.Read(path, Endpoints));
        Assert.Equal("line 2: the key 'custom_id' appears more than once in the object at $; keep one", error.Message);
    }

    [Fact]
    public void ByteOrderMarkAndWindowsLineEndingsAreAcceptedAndBlankLinesKeepTheirNumbers()
    {
        using var dir = new TempDir();
        var path = dir.File("batch.jsonl");
        File.WriteAllBytes(path, [.. Encoding.UTF8.Preamble, .. Encoding.UTF8.GetBytes(Request("a") + "\r\n\r\n" + Request("é") + "\r\n")]);
        var lines = BatchInputFile.Read(path, Endpoints);
        Assert.Equal([(1, "a"), (3, "é")], lines.Select(l => (l.Line, l.CustomId)));
    }
}
