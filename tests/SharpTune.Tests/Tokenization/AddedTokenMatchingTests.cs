using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>
/// Where added tokens are found, and the Lowercase normalizer. Expected ids are what tokenizers 0.23.2 (the Rust
/// library's Node binding: Tokenizer.fromString of the same JSON, encode(text, null, {addSpecialTokens: false}))
/// produced.
/// </summary>
public sealed class AddedTokenMatchingTests
{
    private const int Unk = 0, Bos = 1, Meta = 2, X = 3, MetaX = 4, Z = 5, Q = 6, Underscore = 7, World = 9, Zqx = 10, NormalizedSpecial = 11;

    /// <summary>
    /// SentencePiece style (Prepend "▁" and spaces to "▁"): "&lt;s&gt;" is matched raw; "wörld" has normalized: true,
    /// so it is matched in normalized text as its own normalized form "▁wörld"; "zqx" must stand as a single word;
    /// "&lt;S&gt;" is special and normalized.
    /// </summary>
    private static HfTokenizer Build()
    {
        var dir = TokenizerFixtures.TempDir("added-matching");
        JsonObject Added(int id, string content, bool special, bool normalized, bool singleWord = false) => new()
        {
            ["id"] = id, ["content"] = content, ["special"] = special, ["single_word"] = singleWord,
            ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = normalized,
        };
        var root = new JsonObject
        {
            ["added_tokens"] = new JsonArray(Added(Unk, "<unk>", true, false), Added(Bos, "<s>", true, false),
                Added(World, "wörld", false, true), Added(Zqx, "zqx", false, false, singleWord: true), Added(NormalizedSpecial, "<S>", true, true)),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" }),
            },
            ["pre_tokenizer"] = null,
            ["decoder"] = null,
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["unk_token"] = "<unk>", ["fuse_unk"] = true, ["byte_fallback"] = false,
                ["vocab"] = new JsonObject
                {
                    ["<unk>"] = Unk, ["<s>"] = Bos, ["▁"] = Meta, ["x"] = X, ["▁x"] = MetaX, ["z"] = Z, ["q"] = Q, ["_"] = Underscore, ["▁▁"] = 8,
                },
                ["merges"] = new JsonArray(new JsonArray("▁", "x"), new JsonArray("▁", "▁")),
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        return HfTokenizer.FromDirectory(dir);
    }

    [Fact]
    public void Normalized_added_tokens_are_found_in_the_normalized_text_as_their_normalized_form()
    {
        var t = Build();
        Assert.Equal(new[] { Meta, World }, t.Encode(" wörld"));          // "▁" + "▁wörld", not "▁▁" + "wörld"
        Assert.Equal(new[] { MetaX, World }, t.Encode("x wörld"));
        Assert.Equal(new[] { World }, t.Encode("wörld"));
        Assert.Equal(new[] { MetaX, Unk }, t.Encode("xwörld"));           // "▁wörld" is not in "▁xwörld"
        Assert.Equal(new[] { Bos, Meta, World }, t.Encode("<s> wörld"));
    }

    [Fact]
    public void Normalized_added_tokens_are_stored_and_decoded_as_their_normalized_form()
    {
        var t = Build();
        Assert.Equal("▁wörld", t.IdToToken(World));
        Assert.Equal("▁<S>", t.IdToToken(NormalizedSpecial));
        Assert.Equal(World, t.TokenToId("wörld"));
        Assert.Equal(new[] { MetaX, NormalizedSpecial }, t.Encode("x <S>"));
        Assert.Equal(new[] { MetaX, Unk }, t.Encode("x<S>"));
        // No decoder: tokens joined by spaces. skip_special_tokens keeps "▁<S>", which is not a special token's content.
        Assert.Equal("<s> ▁x ▁wörld", t.Decode([Bos, MetaX, World]));
        Assert.Equal("▁x ▁wörld", t.Decode([Bos, MetaX, World], skipSpecialTokens: true));
        Assert.Equal("▁<S> ▁x", t.Decode([NormalizedSpecial, MetaX], skipSpecialTokens: true));
    }

    [Fact]
    public void A_single_word_token_needs_no_word_character_beside_it_as_the_rust_regex_w_defines_them()
    {
        var t = Build();
        Assert.Equal(new[] { Zqx }, t.Encode("zqx"));
        Assert.Equal(new[] { MetaX, Meta, Zqx, Meta, MetaX }, t.Encode("x zqx x"));
        Assert.Equal(new[] { Zqx, Meta, Unk }, t.Encode("zqx½"));         // other numbers are not word characters
        Assert.Equal(new[] { Meta, Z, Q, X, Underscore }, t.Encode("zqx_"));
        Assert.Equal(new[] { Meta, Z, Q, X, Unk }, t.Encode("zqx𝐀"));     // a letter outside the BMP
        Assert.Equal(new[] { Meta, Z, Q, X, Unk }, t.Encode("zqxⅠ"));     // a letter number
        Assert.Equal(new[] { Meta, Z, Q, X, Unk }, t.Encode("zqxि"));     // a spacing mark
        Assert.Equal(new[] { Meta, Unk, Z, Q, X }, t.Encode("e\u0301zqx")); // a combining mark before
    }

    [Fact]
    public void Lowercase_maps_dotted_capital_i_to_i_and_combining_dot_as_unicode_does()
    {
        var dir = TokenizerFixtures.TempDir("lowercase");
        var root = new JsonObject
        {
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = 0, ["content"] = "<unk>", ["special"] = true, ["normalized"] = false }),
            ["normalizer"] = new JsonObject { ["type"] = "Lowercase" },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["unk_token"] = "<unk>", ["fuse_unk"] = false,
                ["vocab"] = new JsonObject { ["<unk>"] = 0, ["i"] = 1, ["\u0307"] = 2, ["\u0130"] = 3, ["σ"] = 4, ["ς"] = 5, ["a"] = 6 },
                ["merges"] = new JsonArray(),
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        var t = HfTokenizer.FromDirectory(dir);
        Assert.Equal(new[] { 1, 2 }, t.Encode("\u0130"));
        Assert.Equal(new[] { 6, 1, 2 }, t.Encode("A\u0130"));
        Assert.Equal(new[] { 4, 6 }, t.Encode("Σa"));
        Assert.Equal(new[] { 0, 4 }, t.Encode("ΑΣ"));   // per character: no final-sigma rule, and Greek capital alpha is no "a"
    }
}
