using System.Text.Json.Nodes;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>
/// The tokenizer.json and chat template Llama 3, Qwen3 and Gemma 3 ship, against EXPECTED.json beside them: ids from the
/// Hugging Face tokenizers library itself (Rust), plain and with special tokens, and chat renderings from Python jinja2
/// with transformers' settings. Each tokenizer is loaded once per class (Gemma 3's 262k-entry file takes seconds).
/// </summary>
public abstract class RealTokenizerTests(string name, Lazy<HfTokenizer> tokenizer)
{
    protected HfTokenizer Tokenizer => tokenizer.Value;

    protected JsonObject Expected { get; } = JsonNode.Parse(File.Exists(ExpectedPath(name)) ? File.ReadAllText(ExpectedPath(name)) : "{}")!.AsObject();

    private static string ExpectedPath(string name) => Path.Combine(TestAssets.Tokenizer(name), "EXPECTED.json");

    protected static Lazy<HfTokenizer> Load(string name) => new(() => HfTokenizer.FromDirectory(TestAssets.Tokenizer(name)));

    private static int[] Ids(JsonNode? node) => node!.AsArray().Select(i => i!.GetValue<int>()).ToArray();

    [SharedAssetFact("tokenizers")]
    public void Encodes_as_the_rust_library_does_plain_and_with_special_tokens()
    {
        var cases = Expected["encodings"]!.AsArray();
        Assert.Equal(5, cases.Count);
        foreach (var item in cases)
        {
            var text = item!["text"]!.GetValue<string>();
            Assert.Equal(Ids(item["ids"]), Tokenizer.Encode(text));
            Assert.Equal(Ids(item["ids_with_special_tokens"]), Tokenizer.Encode(text, addSpecialTokens: true));
        }
    }

    [SharedAssetFact("tokenizers")]
    public void Decodes_the_expected_ids_back_to_the_text()
    {
        foreach (var item in Expected["encodings"]!.AsArray())
        {
            var text = item!["text"]!.GetValue<string>();
            Assert.Equal(text, Tokenizer.Decode(Ids(item["ids"])));
            Assert.Equal(text, Tokenizer.Decode(Ids(item["ids_with_special_tokens"]), skipSpecialTokens: true));
        }
    }

    [SharedAssetFact("tokenizers")]
    public void Own_chat_template_renders_as_transformers_does()
    {
        var template = ChatTemplate.FromTokenizer(Tokenizer);
        var cases = Expected["chat"]!.AsArray().Concat(Expected["chat_with_tools"]?.AsArray() ?? []).ToList();
        Assert.NotEmpty(cases);
        foreach (var item in cases)
        {
            var messages = ChatJson.ReadMessages(item!["messages"], "messages");
            var tools = ChatJson.ReadTools(item["tools"], "tools");
            Assert.Equal(item["rendered"]!.GetValue<string>(),
                template.Render(messages, item["add_generation_prompt"]!.GetValue<bool>(), tools));
        }
    }

    [SharedAssetFact("tokenizers")]
    public void Rendered_chat_round_trips_through_the_tokenizer()
    {
        // Training maps character spans to tokens by decoding: the rendering must come back character for character.
        foreach (var item in Expected["chat"]!.AsArray())
        {
            var rendered = item!["rendered"]!.GetValue<string>();
            Assert.Equal(rendered, Tokenizer.Decode(Tokenizer.Encode(rendered)));
        }
    }
}

public sealed class Llama3TokenizerTests() : RealTokenizerTests("llama3", Shared)
{
    private static readonly Lazy<HfTokenizer> Shared = Load("llama3");
}

public sealed class Qwen3TokenizerTests() : RealTokenizerTests("qwen3", Shared)
{
    private static readonly Lazy<HfTokenizer> Shared = Load("qwen3");
}

public sealed class Gemma3TokenizerTests() : RealTokenizerTests("gemma3", Shared)
{
    private static readonly Lazy<HfTokenizer> Shared = Load("gemma3");
}
