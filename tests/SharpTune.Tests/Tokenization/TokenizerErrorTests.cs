using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

public sealed class TokenizerErrorTests
{
    private static TokenizerFormatException LoadFails(string tokenizerJson)
    {
        var dir = TokenizerFixtures.TempDir("bad");
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), tokenizerJson);
        return Assert.Throws<TokenizerFormatException>(() => HfTokenizer.FromDirectory(dir));
    }

    private static string ValidWith(Action<JsonObject> edit)
    {
        var dir = TokenizerFixtures.WriteByteLevel(TokenizerFixtures.TempDir("edit"), llama3: false);
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer.json")))!.AsObject();
        edit(root);
        return root.ToJsonString();
    }

    [Fact]
    public void Missing_file_is_named()
    {
        var dir = TokenizerFixtures.TempDir("empty");
        var e = Assert.Throws<TokenizerFormatException>(() => HfTokenizer.FromDirectory(dir));
        Assert.Contains(Path.Combine(dir, "tokenizer.json"), e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Invalid_json_reports_file_and_line()
    {
        var e = LoadFails("{\n  \"model\": {\n    \"type\": \"BPE\",,\n");
        Assert.Contains("tokenizer.json", e.Message);
        Assert.Contains("line 3", e.Message);
    }

    [Fact]
    public void Unsupported_model_type_is_named()
    {
        var e = LoadFails(ValidWith(r => r["model"]!["type"] = "Unigram"));
        Assert.Contains("Unigram", e.Message);
        Assert.Contains("tokenizer.json", e.Message);
    }

    [Fact]
    public void Unsupported_pre_tokenizer_is_named()
    {
        var e = LoadFails(ValidWith(r => r["pre_tokenizer"] = new JsonObject { ["type"] = "BertPreTokenizer" }));
        Assert.Contains("BertPreTokenizer", e.Message);
        Assert.Contains("pre_tokenizer", e.Message);
    }

    [Fact]
    public void Bpe_dropout_is_refused_rather_than_ignored()
    {
        var e = LoadFails(ValidWith(r => r["model"]!["dropout"] = 0.1));
        Assert.Contains("dropout", e.Message);
        Assert.Contains("0.1", e.Message);
        // null (what the library writes when there is none) and 0 mean no dropout.
        foreach (var none in new JsonNode?[] { null, 0.0 })
        {
            var dir = TokenizerFixtures.TempDir("dropout");
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), ValidWith(r => r["model"]!["dropout"] = none?.DeepClone()));
            Assert.NotEmpty(HfTokenizer.FromDirectory(dir).Encode("hello"));
        }
    }

    [Fact]
    public void Merge_with_unknown_token_is_located()
    {
        var e = LoadFails(ValidWith(r => r["model"]!["merges"]!.AsArray().Insert(0, new JsonArray("q", "zzz"))));
        Assert.Contains("merge #0", e.Message);
    }

    [Fact]
    public void Missing_model_is_reported()
    {
        var e = LoadFails("{\"version\": \"1.0\"}");
        Assert.Contains("missing 'model'", e.Message);
    }

    [Fact]
    public void Unknown_id_in_decode_is_rejected()
    {
        var dir = TokenizerFixtures.WriteByteLevel(TokenizerFixtures.TempDir("ok"), llama3: false);
        var t = HfTokenizer.FromDirectory(dir);
        Assert.Throws<ArgumentOutOfRangeException>(() => t.Decode([5, 100_000]));
    }
}
