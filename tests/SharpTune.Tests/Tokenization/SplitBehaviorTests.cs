using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>
/// The Split pre-tokenizer's merged behaviours on adjacent delimiters. Expected ids are what tokenizers 0.23.2 (the
/// Rust library's Node binding: Tokenizer.fromString of the same file, encode(text, null, {addSpecialTokens: false}))
/// produced.
/// </summary>
public sealed class SplitBehaviorTests
{
    private const int A = 0, B = 1, Space = 2, TwoSpaces = 3, ASpace = 4, SpaceB = 5;

    /// <summary>Splits on " "; the merges make "  ", "a " and " b", so the ids show where the pieces were cut.</summary>
    private static HfTokenizer Build(string behavior)
    {
        var dir = TokenizerFixtures.TempDir("split-" + behavior);
        var root = new JsonObject
        {
            ["added_tokens"] = new JsonArray(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["String"] = " " }, ["behavior"] = behavior, ["invert"] = false },
            ["decoder"] = null,
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["unk_token"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false,
                ["vocab"] = new JsonObject { ["a"] = A, ["b"] = B, [" "] = Space, ["  "] = TwoSpaces, ["a "] = ASpace, [" b"] = SpaceB },
                ["merges"] = new JsonArray(new JsonArray(" ", " "), new JsonArray("a", " "), new JsonArray(" ", "b")),
            },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString());
        return HfTokenizer.FromDirectory(dir);
    }

    [Fact]
    public void Merged_with_previous_joins_a_delimiter_only_to_a_piece_that_is_not_one()
    {
        var t = Build("MergedWithPrevious");
        Assert.Equal(new[] { ASpace, Space, B }, t.Encode("a  b"));        // "a ", " ", "b"
        Assert.Equal(new[] { ASpace, B }, t.Encode("a b"));
        Assert.Equal(new[] { Space, Space, ASpace, Space, B, Space, Space }, t.Encode("  a  b  "));
    }

    [Fact]
    public void Merged_with_next_joins_a_delimiter_only_to_a_piece_that_is_not_one()
    {
        var t = Build("MergedWithNext");
        Assert.Equal(new[] { A, Space, SpaceB }, t.Encode("a  b"));        // "a", " ", " b"
        Assert.Equal(new[] { A, SpaceB }, t.Encode("a b"));
        Assert.Equal(new[] { Space, Space, A, Space, SpaceB, Space, Space }, t.Encode("  a  b  "));
    }
}
