using System.Text.Json.Nodes;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>
/// Tokens added to the real GPT-2, Llama 3 and Qwen3 tokenizers, against the Rust <c>tokenizers</c> library itself (Node
/// binding @anush008/tokenizers 0.6.0): each tokenizer.json loaded with <c>Tokenizer.fromFile</c>, the tokens below added
/// one call each with <c>addAddedTokens([new AddedToken(content, special, {normalized: false, leftStrip: false,
/// rightStrip: false, singleWord: false})])</c> — Axolotl's settings — then each text encoded with
/// <c>addSpecialTokens: false</c> and the tokenizer saved to read its added_tokens. The ids are pasted below.
/// </summary>
public sealed class TokenAdditionsTests
{
    private static readonly NewToken[] Tokens =
    [
        new("<|im_start|>"), new("<|im_end|>", Special: true), new("<tool_call>"), new("</tool_call>"), new("hello"),
        new("<|im_end|>", Special: true),
    ];

    private static readonly string[] Texts =
    [
        "<|im_start|>user\nSay hello to the world<|im_end|>\n<|im_start|>assistant\n<tool_call>{\"name\": \"greet\"}</tool_call><|im_end|>",
        "no added tokens in here, just text 123",
        " <|im_start|> spaced  <|im_end|>  ",
    ];

    private static readonly System.Text.Json.JsonSerializerOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static TheoryData<string> Names => new("gpt2", "llama3", "qwen3");

    /// <summary>What the Rust library gave: the ids of <see cref="Tokens"/> and the encodings of <see cref="Texts"/>.</summary>
    private static (int[] TokenIds, int[][] Encodings) RustLibrary(string name) => name switch
    {
        "gpt2" => ([50257, 50258, 50259, 50260, 31373, 50258],
        [
            [50257, 7220, 198, 25515, 220, 31373, 284, 262, 995, 50258, 198, 50257, 562, 10167, 198, 50259, 4895, 3672, 1298, 366, 70, 2871, 20662, 50260, 50258],
            [3919, 2087, 16326, 287, 994, 11, 655, 2420, 17031],
            [220, 50257, 38980, 220, 220, 50258, 220, 220],
        ]),
        "llama3" => ([128256, 128257, 128258, 128259, 15339, 128257],
        [
            [128256, 882, 198, 46864, 220, 15339, 311, 279, 1917, 128257, 198, 128256, 78191, 198, 128258, 5018, 609, 794, 330, 70, 3829, 9388, 128259, 128257],
            [2201, 3779, 11460, 304, 1618, 11, 1120, 1495, 220, 4513],
            [220, 128256, 64928, 256, 128257, 256],
        ]),
        // Qwen3 already has <|im_start|>, <|im_end|> and the tool-call tags as added tokens: they keep their ids.
        "qwen3" => ([151644, 151645, 151657, 151658, 14990, 151645],
        [
            [151644, 872, 198, 45764, 220, 14990, 311, 279, 1879, 151645, 198, 151644, 77091, 198, 151657, 4913, 606, 788, 330, 70, 3744, 9207, 151658, 151645],
            [2152, 3694, 11211, 304, 1588, 11, 1101, 1467, 220, 16, 17, 18],
            [220, 151644, 63828, 256, 151645, 256],
        ]),
        _ => throw new ArgumentException(name),
    };

    [SharedAssetTheory("tokenizers")]
    [MemberData(nameof(Names))]
    public void Added_tokens_take_the_ids_the_rust_library_gives_and_encode_as_it_does(string name)
    {
        using var dir = new TempDir();
        var added = TokenAdditions.Write(TestAssets.Tokenizer(name), dir.Path, Tokens);
        var (ids, encodings) = RustLibrary(name);
        Assert.Equal(ids, added.Select(a => a.Id));

        var tokenizer = HfTokenizer.FromDirectory(dir.Path);
        for (var i = 0; i < Texts.Length; i++)
            Assert.Equal(encodings[i], tokenizer.Encode(Texts[i]));
        Assert.Equal(Math.Max(ids.Max() + 1, HfTokenizer.FromDirectory(TestAssets.Tokenizer(name)).IdCount), tokenizer.IdCount);
    }

    [SharedAssetTheory("tokenizers")]
    [MemberData(nameof(Names))]
    public void Text_without_added_tokens_encodes_as_before(string name)
    {
        using var dir = new TempDir();
        TokenAdditions.Write(TestAssets.Tokenizer(name), dir.Path, [new("<|im_start|>"), new("<|im_end|>", Special: true)]);
        var tokenizer = HfTokenizer.FromDirectory(dir.Path);
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.Tokenizer(name), "EXPECTED.json")))!;
        var cases = (expected as JsonArray ?? expected["encodings"])!.AsArray();
        Assert.NotEmpty(cases);
        foreach (var item in cases)
        {
            var text = item!["text"]!.GetValue<string>();
            if (text.Contains("<|im_")) continue;
            Assert.Equal(item["ids"]!.AsArray().Select(i => i!.GetValue<int>()), tokenizer.Encode(text));
        }
    }

    [SharedAssetFact("tokenizers")]
    public void Saved_files_hold_the_entries_as_the_rust_library_and_transformers_write_them()
    {
        using var dir = new TempDir();
        TokenAdditions.Write(TestAssets.Tokenizer("gpt2"), dir.Path, Tokens);
        var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "tokenizer.json")))!["added_tokens"]!.AsArray();
        // The Rust library's own save of the same additions (trailing entries, sorted by id).
        Assert.Equal(
            """[{"id":31373,"content":"hello","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":false},""" +
            """{"id":50256,"content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":true},""" +
            """{"id":50257,"content":"<|im_start|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":false},""" +
            """{"id":50258,"content":"<|im_end|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},""" +
            """{"id":50259,"content":"<tool_call>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":false},""" +
            """{"id":50260,"content":"</tool_call>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":false}]""",
            saved.ToJsonString(Relaxed));

        var decoder = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "tokenizer_config.json")))!["added_tokens_decoder"]!.AsObject();
        Assert.Equal("""{"content":"<|im_end|>","lstrip":false,"normalized":false,"rstrip":false,"single_word":false,"special":true}""",
            decoder["50258"]!.ToJsonString(Relaxed));
        Assert.Equal(["31373", "50256", "50257", "50258", "50259", "50260"], decoder.Select(kv => kv.Key));

        // The Rust library's decode(ids, skip_special_tokens: true) of the first text drops the special <|im_end|> only.
        var tokenizer = HfTokenizer.FromDirectory(dir.Path);
        Assert.Equal("<|im_start|>user\nSay hello to the world\n<|im_start|>assistant\n<tool_call>{\"name\": \"greet\"}</tool_call>",
            tokenizer.Decode(RustLibrary("gpt2").Encodings[0], skipSpecialTokens: true));
        Assert.True(tokenizer.IsSpecial(50258));
        Assert.False(tokenizer.IsSpecial(50257));
    }

    [Fact]
    public void An_empty_token_or_one_both_special_and_not_is_refused_naming_the_option()
    {
        using var dir = new TempDir();
        var empty = Assert.Throws<ArgumentException>(() => TokenAdditions.Write(dir.Path, dir.Path, [new("<a>"), new("")]));
        Assert.Contains("empty", empty.Message);
        var both = Assert.Throws<ArgumentException>(() => TokenAdditions.Write(dir.Path, dir.Path, [new("<a>"), new("<a>", Special: true)]));
        Assert.Contains("'<a>'", both.Message);
        var missing = Assert.Throws<TokenizerFormatException>(() => TokenAdditions.Write(dir.Path, dir.Path, [new("<a>")]));
        Assert.Contains("tokenizer.json", missing.Message);
    }
}
