using System.Text.Json;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

public sealed class Gpt2TokenizerTests
{
    private static readonly Lazy<HfTokenizer> Gpt2 = new(() => HfTokenizer.FromDirectory(TestAssets.Gpt2Tokenizer));

    private static int Id(string token) => Gpt2.Value.TokenToId(token) ?? throw new Xunit.Sdk.XunitException($"'{token}' not in GPT-2 vocab");

    [SharedAssetFact("tokenizers/gpt2/EXPECTED.json")]
    public void Reproduces_independent_encoder_ids_and_decodes_back()
    {
        // EXPECTED.json: encodings by the npm package gpt-3-encoder 1.1.4 (see its README).
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestAssets.Gpt2Tokenizer, "EXPECTED.json")));
        Assert.NotEmpty(doc.RootElement.EnumerateArray());
        foreach (var item in doc.RootElement.EnumerateArray())
        {
            var text = item.GetProperty("text").GetString()!;
            var expected = item.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(expected, Gpt2.Value.Encode(text));
            Assert.Equal(text, Gpt2.Value.Decode(expected));
        }
    }

    [SharedAssetFact("tokenizers/gpt2")]
    public void Reports_vocabulary_and_special_tokens()
    {
        var t = Gpt2.Value;
        Assert.Equal(50257, t.VocabSize);
        Assert.Equal(50256, t.EosTokenId);
        Assert.Equal(50256, t.BosTokenId);
        Assert.Equal("<|endoftext|>", t.EosToken);
        Assert.Null(t.PadTokenId);
        Assert.True(t.IsSpecial(50256));
        Assert.False(t.IsSpecial(995));
        Assert.Equal("Ġworld", t.IdToToken(995));
        Assert.Equal(995, t.TokenToId("Ġworld"));
        // GPT-2's post-processor adds nothing, so addSpecialTokens changes nothing.
        Assert.Equal(t.Encode("Hello world"), t.Encode("Hello world", addSpecialTokens: true));
    }

    [SharedAssetFact("tokenizers/gpt2")]
    public void Splits_whitespace_runs_as_the_gpt2_regex_does()
    {
        // `\s+(?!\S)` leaves the last space of a run to prefix the next word: "a   b" → "a", "␣␣", "␣b"; GPT-2 has
        // no two-space token, so the run is two "Ġ" (CodeGen's extra whitespace ids must not appear).
        Assert.Equal(new[] { Id("a"), 220, 220, Id("Ġb") }, Gpt2.Value.Encode("a   b"));
        // The same rule splits "\n\n" before a word into two newline tokens (tiktoken's gpt2 gives 198, 198 too).
        Assert.Equal(new[] { Id("Hello"), 198, 198, Id("world") }, Gpt2.Value.Encode("Hello\n\nworld"));
        Assert.Equal(new[] { Id("Hello"), Id("ĊĊ") }, Gpt2.Value.Encode("Hello\n\n"));
        Assert.Equal(new[] { Id("x"), 220, 220 }, Gpt2.Value.Encode("x  "));
    }

    [SharedAssetFact("tokenizers/gpt2")]
    public void Special_token_in_text_is_one_id_and_never_split()
    {
        var ids = Gpt2.Value.Encode("Hi<|endoftext|> there");
        Assert.Equal(new[] { Id("Hi"), 50256, Id("Ġthere") }, ids);
        Assert.Equal("Hi<|endoftext|> there", Gpt2.Value.Decode(ids));
        Assert.Equal("Hi there", Gpt2.Value.Decode(ids, skipSpecialTokens: true));
    }

    [SharedAssetTheory("tokenizers/gpt2")]
    [InlineData("Grüße aus Köln – naïve café")]
    [InlineData("日本語のテキストと中文")]
    [InlineData("emoji 😀👍🏽 and 👨‍👩‍👧 family")]
    [InlineData("  leading, trailing   \t\ttabs\n\n\nnewlines \r\n ")]
    [InlineData("code:\n    if (x) {\n        return y;\n    }\n")]
    [InlineData("")]
    public void Round_trips(string text)
    {
        Assert.Equal(text, Gpt2.Value.Decode(Gpt2.Value.Encode(text)));
    }

    [SharedAssetFact("tokenizers/gpt2")]
    public void Streaming_holds_back_partial_emoji_bytes_and_matches_full_decode()
    {
        var text = "Smile 😀 ok 👍🏽!";
        var ids = Gpt2.Value.Encode(text);
        var stream = Gpt2.Value.CreateStreamingDecoder();
        var pieces = ids.Select(stream.Push).ToList();
        Assert.Equal(text, string.Concat(pieces) + stream.Flush());
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        // 😀 is 4 UTF-8 bytes; GPT-2 has no single token for it, so at least one push must return nothing.
        Assert.True(ids.Count > pieces.Count(p => p.Length > 0));
    }
}
