using System.Text.Json.Nodes;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>
/// Pairs of texts encoded as the Rust tokenizers library's <c>encode((a, b), add_special_tokens=True)</c> lays them out
/// (huggingface/tokenizers@06025e4ca151dcc7f6a4872e8857e8f175e8d3ac, processors/template.rs, bert.rs, roberta.rs,
/// sequence.rs) and truncates them (utils/truncation.rs, longest_first). Each text's own ids are EXPECTED.json's, made
/// by the Rust library; the layouts and the truncated lengths are worked by hand from those rules.
/// </summary>
public sealed class PairEncodingTests
{
    private static readonly Lazy<HfTokenizer> Gemma3 = new(() => HfTokenizer.FromDirectory(TestAssets.Tokenizer("gemma3")));

    private static int[] ExpectedIds(string tokenizer, int index) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.Tokenizer(tokenizer), "EXPECTED.json")))!["encodings"]![index]!["ids"]!
            .AsArray().Select(i => i!.GetValue<int>()).ToArray();

    private static string ExpectedText(string tokenizer, int index) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.Tokenizer(tokenizer), "EXPECTED.json")))!["encodings"]![index]!["text"]!.GetValue<string>();

    [SharedAssetFact("tokenizers")]
    public void Gemma3_pair_template_puts_bos_before_each_text()
    {
        // tokenizer.json's pair: <bos> $A <bos>:1 $B:1 (and tokenizer_config's add_bos_token gives the same layout).
        var (a, b) = (ExpectedIds("gemma3", 0), ExpectedIds("gemma3", 1));
        var ids = Gemma3.Value.EncodePair(ExpectedText("gemma3", 0), ExpectedText("gemma3", 1), addSpecialTokens: true);
        Assert.Equal([2, .. a, 2, .. b], ids);
        Assert.Equal([.. a, .. b], Gemma3.Value.EncodePair(ExpectedText("gemma3", 0), ExpectedText("gemma3", 1)));
    }

    [SharedAssetFact("tokenizers")]
    public void Gemma3_longest_first_truncation_follows_the_rust_arithmetic()
    {
        var (a, b) = (ExpectedIds("gemma3", 0), ExpectedIds("gemma3", 1));   // 11 and 31 ids
        Assert.Equal(11, a.Length);
        Assert.Equal(31, b.Length);
        string textA = ExpectedText("gemma3", 0), textB = ExpectedText("gemma3", 1);
        // max 30 less 2 specials = 28: the shorter (11) fits, the longer keeps max(11, 28 - 11) = 17.
        Assert.Equal([2, .. a, 2, .. b[..17]], Gemma3.Value.EncodePair(textA, textB, true, maxLength: 30));
        // max 15 → 13: 11 + max(11, 2) = 22 > 13, so both are cut to 13 / 2 = 6 and 6 + 13 % 2 = 7 (the longer gets 7).
        Assert.Equal([2, .. a[..6], 2, .. b[..7]], Gemma3.Value.EncodePair(textA, textB, true, maxLength: 15));
        Assert.Equal([2, .. b[..7], 2, .. a[..6]], Gemma3.Value.EncodePair(textB, textA, true, maxLength: 15));
        // Only the specials fit.
        Assert.Equal([2, 2], Gemma3.Value.EncodePair(textA, textB, true, maxLength: 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Gemma3.Value.EncodePair(textA, textB, true, maxLength: 1));
        // One empty text: the other keeps all the room the specials leave (max(0, 10 - 2 - 0) = 8), on either side.
        Assert.Equal([2, 2, .. b[..8]], Gemma3.Value.EncodePair("", textB, true, maxLength: 10));
        Assert.Equal([2, .. b[..8], 2], Gemma3.Value.EncodePair(textB, "", true, maxLength: 10));
        // A pair already short enough is left whole.
        Assert.Equal(44, Gemma3.Value.EncodePair(textA, textB, true, maxLength: 44).Count);
    }

    [SharedAssetTheory("tokenizers")]
    [InlineData("llama3")]
    [InlineData("qwen3")]
    public void Byte_level_post_processor_adds_nothing_between_the_texts(string name)
    {
        // Both ship post_processor ByteLevel (and no add_bos_token): the pair is the two encodings back to back.
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Tokenizer(name));
        var (a, b) = (ExpectedIds(name, 0), ExpectedIds(name, 1));
        Assert.Equal([.. a, .. b], tokenizer.EncodePair(ExpectedText(name, 0), ExpectedText(name, 1), addSpecialTokens: true));
        // 12 + 22 (Llama 3) or 29 (Qwen3) ids into 20: the shorter (12) leaves 8 < 12, so both get 10.
        Assert.Equal(12, a.Length);
        Assert.Equal(name == "llama3" ? 22 : 29, b.Length);
        Assert.Equal([.. a[..10], .. b[..10]], tokenizer.EncodePair(ExpectedText(name, 0), ExpectedText(name, 1), true, maxLength: 20));
    }

    // GPT-2's "Hello world" = [15496, 995] and "Hello, world!" = [15496, 11, 995, 0] (the gpt2 EXPECTED.json, from the Rust library).
    private static readonly int[] HelloWorld = [15496, 995], HelloCommaWorld = [15496, 11, 995, 0];

    private static HfTokenizer Gpt2With(TempDir dir, JsonObject postProcessor, string? tokenizerConfig = null)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.Gpt2Tokenizer, "tokenizer.json")))!.AsObject();
        json["post_processor"] = postProcessor;
        dir.File("tokenizer.json", json.ToJsonString());
        dir.File("tokenizer_config.json", tokenizerConfig ?? "{}");
        return HfTokenizer.FromDirectory(dir.Path);
    }

    private static JsonArray TokenAndId(string token, int id) => new(token, id);

    [SharedAssetFact("tokenizers")]
    public void Bert_processing_pairs_as_cls_a_sep_b_sep()
    {
        using var dir = new TempDir();
        var tokenizer = Gpt2With(dir, new JsonObject { ["type"] = "BertProcessing", ["sep"] = TokenAndId("<|endoftext|>", 50256), ["cls"] = TokenAndId(" Hello", 18435) });
        Assert.Equal([18435, .. HelloWorld, 50256, .. HelloCommaWorld, 50256], tokenizer.EncodePair("Hello world", "Hello, world!", addSpecialTokens: true));
        // max 7 less 3 specials = 4: the shorter (2) stays, the longer keeps max(2, 4 - 2) = 2.
        Assert.Equal([18435, .. HelloWorld, 50256, 15496, 11, 50256], tokenizer.EncodePair("Hello world", "Hello, world!", true, maxLength: 7));
    }

    [SharedAssetFact("tokenizers")]
    public void Roberta_processing_pairs_with_a_double_separator()
    {
        using var dir = new TempDir();
        var tokenizer = Gpt2With(dir, new JsonObject
        {
            ["type"] = "RobertaProcessing", ["sep"] = TokenAndId("<|endoftext|>", 50256), ["cls"] = TokenAndId(" Hello", 18435),
            ["trim_offsets"] = true, ["add_prefix_space"] = false,
        });
        Assert.Equal([18435, .. HelloWorld, 50256, 50256, .. HelloCommaWorld, 50256], tokenizer.EncodePair("Hello world", "Hello, world!", addSpecialTokens: true));
    }

    [SharedAssetFact("tokenizers")]
    public void Template_processing_in_a_sequence_uses_its_pair_pieces_in_order()
    {
        using var dir = new TempDir();
        var template = new JsonObject
        {
            ["type"] = "TemplateProcessing",
            ["single"] = new JsonArray(Special("<|endoftext|>"), Sequence("A")),
            ["pair"] = new JsonArray(Special("<|endoftext|>"), Sequence("A"), Special("!"), Special("!"), Sequence("B"), Special("<|endoftext|>")),
            ["special_tokens"] = new JsonObject
            {
                ["<|endoftext|>"] = new JsonObject { ["id"] = "<|endoftext|>", ["ids"] = new JsonArray(50256), ["tokens"] = new JsonArray("<|endoftext|>") },
                ["!"] = new JsonObject { ["id"] = "!", ["ids"] = new JsonArray(0), ["tokens"] = new JsonArray("!") },
            },
        };
        var tokenizer = Gpt2With(dir, new JsonObject
        {
            ["type"] = "Sequence",
            ["processors"] = new JsonArray(new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true }, template),
        });
        Assert.Equal([50256, .. HelloWorld, 0, 0, .. HelloCommaWorld, 50256], tokenizer.EncodePair("Hello world", "Hello, world!", addSpecialTokens: true));
        Assert.Equal([50256, .. HelloWorld], tokenizer.Encode("Hello world", addSpecialTokens: true));

        static JsonObject Special(string id) => new() { ["SpecialToken"] = new JsonObject { ["id"] = id, ["type_id"] = 0 } };
        static JsonObject Sequence(string id) => new() { ["Sequence"] = new JsonObject { ["id"] = id, ["type_id"] = 0 } };
    }

    [SharedAssetFact("tokenizers")]
    public void Two_processors_that_add_tokens_give_pairs_no_layout()
    {
        using var dir = new TempDir();
        var bert = new JsonObject { ["type"] = "BertProcessing", ["sep"] = TokenAndId("<|endoftext|>", 50256), ["cls"] = TokenAndId(" Hello", 18435) };
        var tokenizer = Gpt2With(dir, new JsonObject { ["type"] = "Sequence", ["processors"] = new JsonArray(bert, bert.DeepClone()) });
        Assert.Throws<NotSupportedException>(() => tokenizer.EncodePair("Hello world", "Hello, world!", addSpecialTokens: true));
        Assert.Equal([.. HelloWorld, .. HelloCommaWorld], tokenizer.EncodePair("Hello world", "Hello, world!"));
    }

    [SharedAssetFact("tokenizers")]
    public void Tokenizer_config_flags_lay_pairs_out_as_transformers_rebuilds_the_post_processor()
    {
        // add_bos_token and add_eos_token: transformers' update_post_processor makes the pair "bos $A eos bos $B eos".
        using var dir = new TempDir();
        var tokenizer = Gpt2With(dir, new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = true },
            """{"add_bos_token": true, "add_eos_token": true, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}""");
        Assert.Equal([50256, .. HelloWorld, 50256, 50256, .. HelloCommaWorld, 50256], tokenizer.EncodePair("Hello world", "Hello, world!", addSpecialTokens: true));
    }
    [SharedAssetTheory("tokenizers")]
    [InlineData("Qwen2Tokenizer", false)]
    [InlineData("PreTrainedTokenizerFast", false)]
    [InlineData("LlamaTokenizerFast", true)]
    [InlineData("GemmaTokenizer", true)]
    public void Tokenizer_config_flags_rebuild_the_layout_only_for_the_classes_transformers_rebuilds_it_for(string tokenizerClass, bool rebuilt)
    {
        // tokenizer.json appends EOS to each text; tokenizer_config says add_bos_token: false (and nothing of EOS). Only the
        // classes with update_post_processor (Llama, CodeLlama, Gemma, Cohere) rebuild the template from the flags, which
        // then adds nothing; Qwen2TokenizerFast and PreTrainedTokenizerFast keep tokenizer.json's.
        using var dir = new TempDir();
        static JsonObject Piece(string kind, string id, int typeId = 0) => new() { [kind] = new JsonObject { ["id"] = id, ["type_id"] = typeId } };
        var tokenizer = Gpt2With(dir, new JsonObject
        {
            ["type"] = "TemplateProcessing",
            ["single"] = new JsonArray(Piece("Sequence", "A"), Piece("SpecialToken", "<|endoftext|>")),
            ["pair"] = new JsonArray(Piece("Sequence", "A"), Piece("SpecialToken", "<|endoftext|>"), Piece("Sequence", "B", 1), Piece("SpecialToken", "<|endoftext|>", 1)),
            ["special_tokens"] = new JsonObject
            {
                ["<|endoftext|>"] = new JsonObject { ["id"] = "<|endoftext|>", ["ids"] = new JsonArray(50256), ["tokens"] = new JsonArray("<|endoftext|>") },
            },
        }, $$"""{"tokenizer_class": "{{tokenizerClass}}", "add_bos_token": false, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}""");
        int[] single = rebuilt ? [.. HelloWorld] : [.. HelloWorld, 50256];
        int[] pair = rebuilt ? [.. HelloWorld, .. HelloCommaWorld] : [.. HelloWorld, 50256, .. HelloCommaWorld, 50256];
        Assert.Equal(single, tokenizer.Encode("Hello world", addSpecialTokens: true));
        Assert.Equal(pair, tokenizer.EncodePair("Hello world", "Hello, world!", addSpecialTokens: true));
    }
}
