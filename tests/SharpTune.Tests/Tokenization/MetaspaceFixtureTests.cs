using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>Newer SentencePiece-style files (Mistral, Llama 2 re-exports): Metaspace pre-tokenizer and decoder.</summary>
public sealed class MetaspaceFixtureTests
{
    private static HfTokenizer Build(string prependScheme, bool split)
    {
        var dir = TokenizerFixtures.TempDir("metaspace");
        var root = new JsonObject
        {
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = 0, ["content"] = "<unk>", ["special"] = true }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = prependScheme, ["split"] = split },
            ["decoder"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = prependScheme, ["split"] = split },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["unk_token"] = "<unk>", ["fuse_unk"] = true, ["byte_fallback"] = false,
                ["vocab"] = new JsonObject { ["<unk>"] = 0, ["▁"] = 1, ["h"] = 2, ["i"] = 3, ["▁h"] = 4, ["▁hi"] = 5, ["▁▁"] = 6 },
                ["merges"] = new JsonArray("▁ h", "▁h i"),
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        return HfTokenizer.FromDirectory(dir);
    }

    [Fact]
    public void Prepends_replaces_spaces_and_decodes_without_the_first_space()
    {
        var t = Build("always", split: true);
        Assert.Equal(new[] { 5, 5 }, t.Encode("hi hi"));
        Assert.Equal("hi hi", t.Decode([5, 5]));
        // A text already starting with a space gets no second "▁" (Metaspace checks before prepending).
        Assert.Equal(new[] { 5 }, t.Encode(" hi"));
    }

    [Fact]
    public void Unknown_characters_fuse_into_one_unk()
    {
        Assert.Equal(new[] { 5, 0 }, Build("always", split: false).Encode("hixyz"));
    }

    [Fact]
    public void Prepend_scheme_never_adds_no_space()
    {
        Assert.Equal(new[] { 2, 3, 5 }, Build("never", split: true).Encode("hi hi"));
    }

    // tokenizers 0.23.2 (Node binding, Tokenizer.fromString of this file, decode(ids, false)) gives " hi" for [6, 5] and
    // "hi   hi" for [5, 6, 5] under "first" and "always", and "   hi" under "never": every '▁' of the first token is
    // dropped, not only one.
    [Theory]
    [InlineData("first", " hi")]
    [InlineData("always", " hi")]
    [InlineData("never", "   hi")]
    public void The_decoder_drops_every_replacement_of_the_first_token(string prependScheme, string expected)
    {
        var t = Build(prependScheme, split: true);
        Assert.Equal(expected, t.Decode([6, 5]));
        Assert.Equal(prependScheme == "never" ? " hi   hi" : "hi   hi", t.Decode([5, 6, 5]));
    }
}
