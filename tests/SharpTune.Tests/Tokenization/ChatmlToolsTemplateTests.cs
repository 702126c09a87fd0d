using System.Text.Json.Nodes;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>
/// The built-in chatml-tools template against transformers: Qwen3's template shares Qwen2.5's tool layout, so its
/// renderings in ../shared/tokenizers/qwen3/EXPECTED.json (made by transformers) are chatml-tools' output once Qwen's
/// English preamble around &lt;tools&gt; and Qwen3's empty think block are taken out. And where a template's end-of-turn
/// marker is plain text to a tokenizer, it becomes a stop string.
/// </summary>
public sealed class ChatmlToolsTemplateTests
{
    private const string Preamble = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
        "You are provided with function signatures within <tools></tools> XML tags:\n";
    private const string Instructions = "\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
        "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";

    [SharedAssetFact("tokenizers/qwen3")]
    public void ToolsCallsAndResultsRenderAsQwensLayoutWithoutThePreamble()
    {
        var expected = JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.Tokenizer("qwen3"), "EXPECTED.json")))!["chat_with_tools"]!.AsArray();
        Assert.Equal(2, expected.Count);
        var template = ChatTemplate.BuiltIn("chatml-tools");
        foreach (var item in expected)
        {
            var qwen3 = item!["rendered"]!.GetValue<string>();
            Assert.Contains(Preamble, qwen3);
            Assert.Contains(Instructions, qwen3);
            var want = qwen3.Replace(Preamble, "").Replace(Instructions, "").Replace("<think>\n\n</think>\n\n", "");
            Assert.Equal(want, template.Render(ChatJson.ReadMessages(item["messages"], "messages"), item["add_generation_prompt"]!.GetValue<bool>(),
                ChatJson.ReadTools(item["tools"], "tools")));
        }
    }

    [Fact]
    public void WithoutToolsItRendersExactlyAsChatml()
    {
        ChatMessage[] conversation = [new("system", "Be brief."), new("user", "Hi"), new("assistant", "Hello!"), new("user", "Weather?")];
        Assert.Equal(ChatTemplate.BuiltIn("chatml").Render(conversation, addGenerationPrompt: true),
            ChatTemplate.BuiltIn("chatml-tools").Render(conversation, addGenerationPrompt: true));
    }

    [SharedAssetFact("models/stories260K")]
    public void AnEndOfTurnMarkerThatIsPlainTextToTheTokenizerIsAStopString()
    {
        var stories = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        Assert.Equal("<|im_end|>", EndOfTurn.Text(ChatTemplate.BuiltIn("chatml-tools")));
        Assert.Equal(["<|im_end|>"], EndOfTurn.StopStrings(ChatTemplate.BuiltIn("chatml-tools"), stories));   // ten ordinary tokens there
        Assert.Equal("<|eot_id|>", EndOfTurn.Text(ChatTemplate.BuiltIn("llama-3")));
        Assert.Equal("</s>", EndOfTurn.Text(ChatTemplate.BuiltIn("llama-2")));
        Assert.Empty(EndOfTurn.StopStrings(ChatTemplate.BuiltIn("llama-2"), stories));   // stories260K's own EOS token
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void AnEndOfTurnMarkerThatIsOneSpecialTokenIsLeftToTheToken()
    {
        var qwen = HfTokenizer.FromDirectory(TestAssets.Tokenizer("qwen3"));
        Assert.Empty(EndOfTurn.StopStrings(ChatTemplate.FromTokenizer(qwen), qwen));
        Assert.Empty(EndOfTurn.StopStrings(ChatTemplate.BuiltIn("chatml-tools"), qwen));
    }
}
