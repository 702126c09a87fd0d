using System.Text.Json.Nodes;
using SharpTune.Tests.Serving;
using SharpTune.Tests.Support;

namespace SharpTune.Tests.Tokenization;

/// <summary>Runs the real `sharptune chat-template` executable against transformers' renderings in EXPECTED.json.</summary>
public sealed class ChatTemplateCommandTests
{
    private static JsonObject Case(string tokenizer, string list, int index) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.Tokenizer(tokenizer), "EXPECTED.json")))![list]![index]!.AsObject();

    private static string Write(JsonNode? node)
    {
        var path = Path.Combine(TokenizerFixtures.TempDir("chat-cli"), "data.json");
        File.WriteAllText(path, node!.ToJsonString());
        return path;
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Chat_template_kwargs_reach_the_template_and_a_malformed_value_names_the_option()
    {
        // transformers' apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False), jinja2 3.1.6.
        var messages = Write(JsonNode.Parse("""[{"role": "user", "content": "Summarise: the cat sat."}]"""));
        var (code, output, error) = SharpTuneCli.Run("chat-template", "--model", TestAssets.Tokenizer("qwen3"), "--messages", messages,
            "--add-generation-prompt", "--chat-template-kwargs", """{"enable_thinking": false}""");
        Assert.True(code == 0, error);
        Assert.Equal("<|im_start|>user\nSummarise: the cat sat.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n", output);

        (code, _, error) = SharpTuneCli.Run("chat-template", "--model", TestAssets.Tokenizer("qwen3"), "--messages", messages, "--template-args", "[false]");
        Assert.NotEqual(0, code);
        Assert.Contains("--template-args", error);
    }

    [SharedAssetFact("tokenizers/llama3")]
    public void Prints_the_rendering_exactly_with_no_newline_added()
    {
        var item = Case("llama3", "chat", 0);
        Assert.True(item["add_generation_prompt"]!.GetValue<bool>());
        var (code, output, error) = SharpTuneCli.Run("chat-template", "--model", TestAssets.Tokenizer("llama3"), "--messages", Write(item["messages"]), "--add-generation-prompt");
        Assert.True(code == 0, error);
        Assert.Equal(item["rendered"]!.GetValue<string>(), output);
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Renders_tools_given_in_their_own_file()
    {
        var item = Case("qwen3", "chat_with_tools", 1);
        Assert.False(item["add_generation_prompt"]!.GetValue<bool>());
        var (code, output, error) = SharpTuneCli.Run("chat-template", "--model", TestAssets.Tokenizer("qwen3"),
            "--messages", Write(item["messages"]), "--tools", Write(item["tools"]));
        Assert.True(code == 0, error);
        Assert.Equal(item["rendered"]!.GetValue<string>(), output);
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Bad_message_is_reported_with_the_file_and_field()
    {
        var path = Write(JsonNode.Parse("""{"messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c","function":{"arguments":"{}"}}]}]}"""));
        var (code, _, error) = SharpTuneCli.Run("chat-template", "--model", TestAssets.Tokenizer("qwen3"), "--messages", path);
        Assert.Equal(1, code);
        Assert.Contains(path, error);
        Assert.Contains("messages[1].tool_calls[0].function.name", error);
    }
}
