using System.Text.Json;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>Llama-style SentencePiece BPE: Prepend("▁") + Replace(" ", "▁") normalizer, byte fallback, Strip decoder.</summary>
public sealed class Stories260KTokenizerTests
{
    private static readonly Lazy<HfTokenizer> Stories = new(() => HfTokenizer.FromDirectory(TestAssets.Stories260K));

    [SharedAssetFact("models/stories260K/REFERENCE.json")]
    public void Reproduces_llama2c_prompt_ids_with_bos()
    {
        // prompt_ids were produced by llama2.c's run.c encoder (see the folder's README).
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestAssets.Stories260K, "REFERENCE.json")));
        var cases = doc.RootElement.GetProperty("cases").EnumerateArray().ToList();
        Assert.NotEmpty(cases);
        foreach (var c in cases)
        {
            var prompt = c.GetProperty("prompt").GetString()!;
            var expected = c.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(expected, Stories.Value.Encode(prompt, addSpecialTokens: true));
            Assert.Equal(expected[1..], Stories.Value.Encode(prompt));
            Assert.Equal(prompt, Stories.Value.Decode(expected, skipSpecialTokens: true));
        }
    }

    [SharedAssetFact("models/stories260K")]
    public void Reports_special_tokens_from_config()
    {
        var t = Stories.Value;
        Assert.Equal(512, t.VocabSize);
        Assert.Equal(1, t.BosTokenId);
        Assert.Equal(2, t.EosTokenId);
        Assert.Equal("<s>", t.BosToken);
        Assert.Null(t.PadTokenId);
        Assert.True(t.IsSpecial(1) && t.IsSpecial(2) && t.IsSpecial(0));
        Assert.Equal("<0x0A>", t.IdToToken(t.TokenToId("<0x0A>")!.Value));
    }

    [SharedAssetFact("models/stories260K")]
    public void Characters_outside_the_vocabulary_become_utf8_byte_tokens()
    {
        // "ü" is U+00FC = C3 BC in UTF-8; this 512-token vocabulary has no piece for it (it has "é").
        var ids = Stories.Value.Encode("ü");
        var tokens = ids.Select(i => Stories.Value.IdToToken(i)).ToArray();
        Assert.Equal(new[] { "▁", "<0xC3>", "<0xBC>" }, tokens);
        Assert.Equal("\n", Stories.Value.Decode([Stories.Value.TokenToId("<0x0A>")!.Value]));
    }

    [SharedAssetFact("models/stories260K")]
    public void Special_tokens_in_text_are_single_ids()
    {
        var t = Stories.Value;
        var ids = t.Encode("Hi</s><s>Bye");
        Assert.Contains(2, ids);
        Assert.Contains(1, ids);
        Assert.Equal("Hi</s><s> Bye", t.Decode(ids)); // Hugging Face's legacy Llama rule: each text stretch gets its own "▁".
        Assert.Equal("Hi Bye", t.Decode(ids, skipSpecialTokens: true));
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData("Once upon a time, there was a little girl.")]
    [InlineData("  two leading spaces and three   inside ")]
    [InlineData("tabs\tand\nnewlines\n\n")]
    [InlineData("Grüße 日本 😀👍🏽")]
    [InlineData("a")]
    [InlineData("\n")]
    public void Round_trips(string text)
    {
        Assert.Equal(text, Stories.Value.Decode(Stories.Value.Encode(text)));
        Assert.Equal(text, Stories.Value.Decode(Stories.Value.Encode(text, addSpecialTokens: true), skipSpecialTokens: true));
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData("Once upon a time, Lily saw a cat.")]
    [InlineData(" leading space and  double")]
    [InlineData("emoji 😀 split over byte tokens\n")]
    public void Streaming_concatenation_equals_full_decode(string text)
    {
        var t = Stories.Value;
        var ids = t.Encode(text, addSpecialTokens: true);
        var stream = t.CreateStreamingDecoder(skipSpecialTokens: true);
        var pieces = ids.Select(stream.Push).ToList();
        Assert.Equal(t.Decode(ids, skipSpecialTokens: true), string.Concat(pieces) + stream.Flush());
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
    }

    [SharedAssetFact("models/stories260K")]
    public void Streaming_keeps_the_space_between_words_but_not_before_the_first()
    {
        var t = Stories.Value;
        var stream = t.CreateStreamingDecoder();
        var pieces = t.Encode("Once upon").Select(stream.Push).Where(p => p.Length > 0).ToList();
        Assert.Equal("Once", pieces[0][..4]);
        Assert.StartsWith(" ", pieces[^1]);
    }

    [SharedAssetTheory("models/stories260K")]
    [InlineData("Once", " upon a time, Lily saw a cat.")]
    [InlineData("Lily saw", " an emoji 😀 split over byte tokens\n")]
    [InlineData("", "Once upon a time")]
    public void A_continuation_decoder_yields_what_the_new_ids_add_to_the_prompts_text(string prompt, string continuation)
    {
        // What vLLM's detokenizer returns (it starts from the prompt's last ids): decode(prompt + new) minus decode(prompt),
        // so " upon" keeps the space a decode of the new ids alone drops at the start of a text.
        var t = Stories.Value;
        var whole = t.Encode(prompt + continuation, addSpecialTokens: true);
        var promptIds = t.Encode(prompt, addSpecialTokens: true);
        Assert.Equal(promptIds, whole.Take(promptIds.Count));   // the prompt tokenizes the same way inside the whole text
        var stream = t.CreateContinuationDecoder(promptIds, skipSpecialTokens: true);
        var pieces = whole.Skip(promptIds.Count).Select(stream.Push).ToList();
        Assert.Equal(continuation, string.Concat(pieces) + stream.Flush());
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
    }

    [SharedAssetFact("models/stories260K")]
    public void Encodes_a_megabyte_without_pre_tokenizer_and_decodes_it_back_exactly()
    {
        // With no pre-tokenizer the whole text is one BPE word. That the merge loop is not quadratic is measured by
        // `bench/SharpTune.Bench tokenize` on a quiet machine, not asserted here.
        var text = string.Concat(Enumerable.Repeat("Once upon a time, Lily saw a big cat. ", 27_000)); // ≈ 1 MB
        var ids = Stories.Value.Encode(text);
        Assert.Equal(text, Stories.Value.Decode(ids));
    }
}
