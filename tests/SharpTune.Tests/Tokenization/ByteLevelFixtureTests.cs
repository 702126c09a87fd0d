using System.Text.Json.Nodes;
using SharpTune.Tokenization;
using static SharpTune.Tests.Tokenization.TokenizerFixtures;

namespace SharpTune.Tests.Tokenization;

/// <summary>Qwen2/Llama-3 style tokenizers (Split regex + ByteLevel) built in the test; expected ids worked by hand.</summary>
public sealed class ByteLevelFixtureTests
{
    private static readonly Lazy<HfTokenizer> Qwen2Like = new(() => HfTokenizer.FromDirectory(WriteByteLevel(TempDir("qwen2"), llama3: false,
        new JsonObject
        {
            ["eos_token"] = "<|im_end|>", ["pad_token"] = "<|endoftext|>", ["bos_token"] = null,
            ["chat_template"] = new JsonArray(
                new JsonObject { ["name"] = "tool_use", ["template"] = "TOOLS" },
                new JsonObject { ["name"] = "default", ["template"] = "DEFAULT" }),
        })));
    private static readonly Lazy<HfTokenizer> Llama3Like = new(() => HfTokenizer.FromDirectory(WriteByteLevel(TempDir("llama3"), llama3: true)));

    private static int B(char c) => c; // ASCII bytes are their own ids in the fixture

    [Fact]
    public void Applies_merges_lowest_rank_first_within_regex_pieces()
    {
        // "hello" → h e l l o → he, ll → hell → hello;  " world" → Ġ w o r l d → Ġw (rank 4), or (5), Ġwor (6), l, d.
        Assert.Equal(new[] { Hello, SpaceWor, B('l'), B('d') }, Qwen2Like.Value.Encode("hello world"));
    }

    [Fact]
    public void Qwen2_splits_digits_singly_and_llama3_in_threes()
    {
        Assert.Equal(new[] { B('1'), B('2'), B('3'), B('4'), B('5') }, Qwen2Like.Value.Encode("12345"));
        Assert.Equal(new[] { OneTwoThree, B('4'), B('5') }, Llama3Like.Value.Encode("12345"));
    }

    [Fact]
    public void Ignore_merges_takes_a_whole_word_from_the_vocabulary()
    {
        // "Ġworld" is in both vocabularies but no merge path builds it; only ignore_merges (Llama 3) finds it.
        Assert.Equal(new[] { SpaceWorld }, Llama3Like.Value.Encode(" world"));
        Assert.Equal(new[] { SpaceWor, B('l'), B('d') }, Qwen2Like.Value.Encode(" world"));
    }

    [Fact]
    public void Chatml_markers_are_single_ids_and_newlines_split_by_the_regex()
    {
        var ids = Qwen2Like.Value.Encode("<|im_start|>user\nhello<|im_end|>\n");
        Assert.Equal(new[] { ImStart, B('u'), B('s'), B('e'), B('r'), B('\n'), Hello, ImEnd, B('\n') }, ids);
        Assert.Equal("user\nhello\n", Qwen2Like.Value.Decode(ids, skipSpecialTokens: true));
    }

    [Fact]
    public void Non_ascii_text_becomes_utf8_byte_ids()
    {
        // "é" = C3 A9; "😀" = F0 9F 98 80: byte-level ids are the byte values.
        Assert.Equal(new[] { 0xC3, 0xA9 }, Qwen2Like.Value.Encode("é"));
        Assert.Equal(new[] { 0xF0, 0x9F, 0x98, 0x80 }, Qwen2Like.Value.Encode("😀"));
    }

    [Fact]
    public void Template_post_processor_adds_begin_of_text_only_when_asked()
    {
        Assert.Equal(new[] { BeginOfText, Hello }, Llama3Like.Value.Encode("hello", addSpecialTokens: true));
        Assert.Equal(new[] { Hello }, Llama3Like.Value.Encode("hello"));
        Assert.Equal(new[] { Hello }, Qwen2Like.Value.Encode("hello", addSpecialTokens: true));
    }

    [Fact]
    public void Reads_config_tokens_and_the_default_named_chat_template()
    {
        var t = Qwen2Like.Value;
        Assert.Equal(ImEnd, t.EosTokenId);
        Assert.Equal(EndOfText, t.PadTokenId);
        Assert.Null(t.BosTokenId);
        Assert.Equal("DEFAULT", t.ChatTemplate);
        Assert.Equal(270, t.VocabSize);
        Assert.Null(Llama3Like.Value.ChatTemplate);
    }

    [Theory]
    [InlineData("<|im_start|>system\nYou are   helpful.\t\n\n<|im_end|>")]
    [InlineData("Grüße 世界 😀👍🏽 12345 it's")]
    [InlineData("   \n\r\n  ")]
    public void Round_trips_both_styles(string text)
    {
        Assert.Equal(text, Qwen2Like.Value.Decode(Qwen2Like.Value.Encode(text)));
        Assert.Equal(text, Llama3Like.Value.Decode(Llama3Like.Value.Encode(text)));
    }

    [Fact]
    public void Streaming_emits_emoji_only_when_its_last_byte_arrives()
    {
        var stream = Qwen2Like.Value.CreateStreamingDecoder();
        Assert.Equal("hello", stream.Push(Hello));
        Assert.Equal("", stream.Push(0xF0));
        Assert.Equal("", stream.Push(0x9F));
        Assert.Equal("", stream.Push(0x98));
        Assert.Equal("😀", stream.Push(0x80));
        Assert.Equal("<|im_end|>", stream.Push(ImEnd));
        var skipping = Qwen2Like.Value.CreateStreamingDecoder(skipSpecialTokens: true);
        Assert.Equal("", skipping.Push(ImEnd));
    }

    [Fact]
    public void Encodes_a_megabyte_and_decodes_it_back_exactly()
    {
        // Speed is measured by `bench/SharpTune.Bench tokenize` on a quiet machine, not asserted here.
        var text = string.Concat(Enumerable.Repeat("hello world 123, it's   here\n", 36_000)); // ≈ 1 MB
        var ids = Llama3Like.Value.Encode(text);
        Assert.Equal(Enumerable.Repeat(Llama3Like.Value.Encode("hello world 123, it's   here\n"), 36_000).SelectMany(i => i), ids);
        Assert.Equal(text, Llama3Like.Value.Decode(ids));
    }
}
