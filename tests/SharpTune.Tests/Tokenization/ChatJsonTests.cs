using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>Messages and tools as OpenAI and transformers write them, and what templates receive from them.</summary>
public sealed class ChatJsonTests
{
    private static IReadOnlyList<ChatMessage> Read(string json) => ChatJson.ReadMessages(JsonNode.Parse(json), "messages");

    [Fact]
    public void Legacy_function_call_and_function_result_become_a_linked_tool_call_and_tool_message()
    {
        var messages = Read("""
            [{"role":"user","content":"Weather?"},
             {"role":"assistant","content":null,"function_call":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}},
             {"role":"function","name":"get_weather","content":"-3"}]
            """);
        var call = Assert.Single(messages[1].ToolCalls);
        Assert.Equal(("call_0", "get_weather", "{\"city\":\"Oslo\"}"), (call.Id, call.Name, call.ArgumentsJson));
        Assert.Equal("", messages[1].Content);
        Assert.Equal(("tool", "call_0", "get_weather", "-3"), (messages[2].Role, messages[2].ToolCallId, messages[2].Name, messages[2].Content));

        var tools = ChatJson.ReadTools(null, "tools", JsonNode.Parse("""[{"name":"get_weather","description":"d","parameters":{"type":"object"}}]"""))!;
        Assert.Equal("""{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object"}}}""",
            Assert.Single(tools).Definition.ToJsonString());
    }

    [Fact]
    public void Tool_call_arguments_reach_the_template_as_the_data_holds_them()
    {
        var template = ChatTemplate.FromSource(
            "{% for m in messages %}{% for c in m.tool_calls or [] %}{{ c.function.arguments is string }}:{{ c.function.arguments | tojson }};{% endfor %}{% endfor %}", null, null);
        var messages = Read("""
            [{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\": 1}"}},
                                              {"id":"b","function":{"name":"f","arguments":{"x":1.5,"y":[true,null]}}}]}]
            """);
        Assert.Equal("True:\"{\\\"x\\\": 1}\";False:{\"x\": 1.5, \"y\": [true, null]};", template.Render(messages, false));
    }

    [Fact]
    public void Content_parts_go_as_a_list_to_templates_that_iterate_them_and_as_text_to_others()
    {
        var messages = Read("""[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]}]""");
        Assert.Equal("a\nb", messages[0].Content);
        var iterating = ChatTemplate.FromSource("{% for m in messages %}{% for p in m['content'] %}[{{ p.type }}]{% endfor %}{% endfor %}", null, null);
        Assert.Equal("[text][image_url][text]", iterating.Render(messages, false));
        var plain = ChatTemplate.FromSource("{% for m in messages %}{{ m.content }}{% endfor %}", null, null);
        Assert.Equal("a\nb", plain.Render(messages, false));
    }

    [Theory]
    [InlineData("""[{"role":"user"}]""", "messages[0].content", "missing_field")]
    [InlineData("""[{"role":"assistant","content":null}]""", "messages[0].content", "wrong_type")]
    [InlineData("""[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":3}}]}]""", "messages[0].tool_calls[0].function.arguments", "wrong_type")]
    [InlineData("""[{"role":"assistant","tool_calls":[{"id":"a","type":"retrieval","function":{"name":"f"}}]}]""", "messages[0].tool_calls[0].type", "invalid_value")]
    [InlineData("""[{"role":"function","content":"1"}]""", "messages[0].name", "missing_field")]
    public void Malformed_messages_name_the_field(string json, string field, string reason)
    {
        var e = Assert.Throws<ChatFormatException>(() => Read(json));
        Assert.Equal((field, reason), (e.Field, e.Reason));
    }

    [Fact]
    public void Tool_lists_are_checked_and_passed_through_unchanged()
    {
        var node = JsonNode.Parse("""[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}},"x-extra":1}]""");
        var tool = Assert.Single(ChatJson.ReadTools(node, "tools")!);
        Assert.Equal(node![0]!.ToJsonString(), tool.Definition.ToJsonString());
        Assert.Equal("tools[1]", Assert.Throws<ChatFormatException>(() => ChatJson.ReadTools(
            JsonNode.Parse("""[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]"""), "tools")).Field);
        Assert.Equal("functions", Assert.Throws<ChatFormatException>(() => ChatJson.ReadTools(
            JsonNode.Parse("[]"), "tools", JsonNode.Parse("[]"))).Field);
    }

    [Fact]
    public void A_tool_renders_the_same_whatever_order_the_client_wrote_its_keys_in()
    {
        // The OpenAI .NET SDK writes "description" before "name"; training lines usually have "name" first.
        var sdk = ChatJson.ReadTools(JsonNode.Parse("""[{"type":"function","function":{"description":"d","strict":false,"name":"f","parameters":{"type":"object"}}}]"""), "tools")!;
        var data = ChatJson.ReadTools(JsonNode.Parse("""[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"},"strict":false}}]"""), "tools")!;
        Assert.Equal("""{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"},"strict":false}}""", sdk[0].Definition.ToJsonString());
        var template = ChatTemplate.BuiltIn("chatml-tools");
        ChatMessage[] question = [new("user", "Weather?")];
        Assert.Equal(template.Render(question, true, data), template.Render(question, true, sdk));
        // Unwrapped (as transformers accepts a bare function) is put in the same order.
        Assert.Equal("""{"name":"f","description":"d"}""", ChatJson.ReadTools(JsonNode.Parse("""[{"description":"d","name":"f"}]"""), "tools")![0].Definition.ToJsonString());
    }
}
