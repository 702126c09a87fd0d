using System.Text.Json.Nodes;
using SharpTune.Embeddings;
using SharpTune.Models;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Embeddings;

/// <summary>The real `sharptune embed` executable against the library's <see cref="TextEmbedder"/>.</summary>
public sealed class EmbedCommandTests
{
    [SharedAssetFact("models/stories260K")]
    public void JsonlInputGetsOneLinePerRecordWithItsFieldsAndTheLibrarysEmbedding()
    {
        using var dir = new TempDir();
        var input = dir.File("in.jsonl", "{\"id\": 7, \"text\": \"Lily went home.\"}\n\n{\"id\": 8, \"text\": \"Tom\"}\n");
        var output = dir.File("out.jsonl");

        var (code, _, stderr) = SharpTuneCli.Run("embed", "--model", TestAssets.Stories260K, "--input", input, "--output", output, "--dimensions", "32");

        Assert.True(code == 0, stderr);
        Assert.Contains("embedded 2 inputs", stderr);
        var lines = File.ReadAllLines(output).Select(l => JsonNode.Parse(l)!).ToArray();
        using var model = PretrainedModel.Load(TestAssets.Stories260K);
        var expected = new TextEmbedder(model, HfTokenizer.FromDirectory(TestAssets.Stories260K))
            .Embed(["Lily went home.", "Tom"], new EmbeddingRequestOptions { Dimensions = 32 });
        Assert.Equal(2, lines.Length);
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(7 + i, lines[i]["id"]!.GetValue<int>());
            TextEmbedderTests.AssertClose(expected.Vectors[i], lines[i]["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray(), $"line {i}");
        }
    }

    [SharedAssetFact("models/stories260K")]
    public void TextGoesToStdoutAndABadLineIsNamed()
    {
        var (code, stdout, stderr) = SharpTuneCli.Run("embed", "--model", TestAssets.Stories260K, "--text", "Tom", "--text", "Lily");
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToArray();
        Assert.Equal(["Tom", "Lily"], lines.Select(l => l["text"]!.GetValue<string>()));
        Assert.All(lines, l => Assert.Equal(64, l["embedding"]!.AsArray().Count));

        using var dir = new TempDir();
        var input = dir.File("bad.jsonl", "{\"text\": \"ok\"}\n{\"prompt\": \"no text\"}\n");
        var (badCode, _, badError) = SharpTuneCli.Run("embed", "--model", TestAssets.Stories260K, "--input", input);
        Assert.Equal(1, badCode);
        Assert.Contains("bad.jsonl:2", badError);

        // An input the model cannot take is named by its line too, blank lines counted: line 4 is the second record.
        var tooLong = dir.File("long.jsonl", "{\"text\": \"ok\"}\n\n\n" + new JsonObject { ["text"] = string.Concat(Enumerable.Repeat("Lily and Tom played. ", 300)) }.ToJsonString() + "\n");
        var (longCode, _, longError) = SharpTuneCli.Run("embed", "--model", TestAssets.Stories260K, "--input", tooLong);
        Assert.Equal(1, longCode);
        Assert.Contains("long.jsonl:4 has", longError);
        Assert.Contains("512", longError);
    }
}
