using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>Real model templates (copied from their tokenizer_config.json) against renderings written by hand from each
/// format's definition.</summary>
public sealed class ChatTemplateTests
{
    // Qwen2-7B-Instruct's template (SmolLM2-Instruct's differs only in the default system text).
    private const string Qwen2Template =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
        + "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    private static readonly ChatMessage System = new("system", "You are terse.");
    private static readonly ChatMessage User = new("user", "Hi there");
    private static readonly ChatMessage Assistant = new("assistant", "Hello!");
    private static readonly ChatMessage User2 = new("user", "Bye");

    [Fact]
    public void Qwen2_chatml_adds_default_system_and_generation_prompt()
    {
        var template = ChatTemplate.FromSource(Qwen2Template, null, "<|im_end|>");
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
            template.Render([User], addGenerationPrompt: true));
        Assert.Equal(
            "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
            template.Render([System, User, Assistant], addGenerationPrompt: false));
    }

    [Fact]
    public void Llama3_template_trims_content_and_starts_with_bos()
    {
        var template = ChatTemplate.BuiltIn("llama-3");
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render([System, new ChatMessage("user", "  Hi there \n")], addGenerationPrompt: true));
    }

    [Fact]
    public void Llama2_template_folds_system_into_first_user_turn()
    {
        var template = ChatTemplate.BuiltIn("llama-2");
        Assert.Equal(
            "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] Bye [/INST]",
            template.Render([System, User, Assistant, User2], addGenerationPrompt: true));
    }

    [Fact]
    public void Llama2_template_rejects_non_alternating_roles_with_its_message()
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.BuiltIn("llama-2").Render([User, User2], false));
        Assert.Contains("Conversation roles must alternate", e.Message);
    }

    [Fact]
    public void Zephyr_template_with_trim_blocks_puts_each_turn_on_its_own_lines()
    {
        var template = ChatTemplate.BuiltIn("zephyr");
        Assert.Equal(
            "<|system|>\nYou are terse.</s>\n<|user|>\nHi there</s>\n<|assistant|>\nHello!</s>\n<|user|>\nBye</s>\n<|assistant|>\n",
            template.Render([System, User, Assistant, User2], addGenerationPrompt: true));
    }

    [Fact]
    public void Chatml_builtin_has_no_default_system_prompt()
    {
        Assert.Equal("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", ChatTemplate.BuiltIn("chatml").Render([User], true));
        Assert.Equal("<|im_start|>user\nHi there<|im_end|>\n", ChatTemplate.BuiltIn("ChatML").Render([User], false));
    }

    [Theory]
    [InlineData("chatml", "Hello!<|im_end|>\n", "Fine.<|im_end|>\n")]
    [InlineData("llama-3", "Hello!<|eot_id|>", "Fine.<|eot_id|>")]
    [InlineData("zephyr", "Hello!</s>\n", "Fine.</s>\n")]
    [InlineData("llama-2", " Hello! </s>", " Fine. </s>")]
    public void Assistant_spans_cover_content_and_end_of_turn(string name, string first, string second)
    {
        var rendered = ChatTemplate.BuiltIn(name).RenderWithAssistantSpans([System, User, Assistant, User2, new ChatMessage("assistant", "Fine.")]);
        Assert.Equal(2, rendered.AssistantSpans.Count);
        Assert.Equal(2, rendered.AssistantSpans[0].MessageIndex);
        Assert.Equal(4, rendered.AssistantSpans[1].MessageIndex);
        Assert.Equal(first, rendered.Text[rendered.AssistantSpans[0].Start..rendered.AssistantSpans[0].End]);
        Assert.Equal(second, rendered.Text[rendered.AssistantSpans[1].Start..rendered.AssistantSpans[1].End]);
        Assert.EndsWith(second, rendered.Text);
    }

    [Fact]
    public void Turns_are_located_in_the_full_rendering_even_when_history_is_rewritten()
    {
        // Renders earlier assistant replies as "[old]" once later turns exist, as reasoning-model templates drop history:
        // the prefix rendering never matches, yet each turn is found where the full rendering writes it.
        var template = ChatTemplate.FromSource(
            "{% for m in messages %}{% if m.role == 'assistant' and not loop.last %}[old]{% else %}{{ m.role }}:{{ m.content }};{% endif %}{% endfor %}"
            + "{% if add_generation_prompt %}assistant:{% endif %}", null, null);
        var rendered = template.RenderWithAssistantSpans([User, Assistant, User2, new ChatMessage("assistant", "Fine.")]);
        Assert.Equal("user:Hi there;[old]user:Bye;assistant:Fine.;", rendered.Text);
        Assert.Equal(["[old]", "Fine.;"], rendered.AssistantSpans.Select(s => rendered.Text[s.Start..s.End]));
    }

    [Fact]
    public void Documents_given_among_the_template_arguments_reach_the_template_as_apply_chat_template_passes_them()
    {
        var template = ChatTemplate.FromSource(
            "{% for d in documents %}[{{ d.title }}: {{ d.text }}]{% endfor %}{{ documents is none }}{{ messages[0].content }}", null, null);
        var documents = new List<object?> { new Dictionary<string, object?> { ["title"] = "t", ["text"] = "x" } };
        Assert.Equal("[t: x]FalseHi there", template.Render([User], false, templateArguments: new Dictionary<string, object?> { ["documents"] = documents }));
        Assert.Throws<ChatTemplateException>(() => template.Render([User], false));   // none: transformers' default, not iterable
        Assert.Equal("TrueHi there", ChatTemplate.FromSource("{{ documents is none }}{{ messages[0].content }}", null, null).Render([User], false));
    }

    [Fact]
    public void Unsupported_syntax_suggests_builtin_templates()
    {
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromSource("{% include 'header.jinja' %}x", null, null));
        Assert.Contains("include", e.Message);
        Assert.Contains("--chat-template chatml|llama-3|llama-2|zephyr", e.Message);
        Assert.Throws<ChatTemplateException>(() => ChatTemplate.BuiltIn("vicuna"));
    }

    [Fact]
    public void Tokenizer_template_is_used_with_its_special_tokens()
    {
        var dir = TokenizerFixtures.WriteByteLevel(TokenizerFixtures.TempDir("chat"), llama3: false,
            new System.Text.Json.Nodes.JsonObject { ["eos_token"] = "<|im_end|>", ["chat_template"] = "{{ messages[0].content }}{{ eos_token }}" });
        var template = ChatTemplate.FromTokenizer(HfTokenizer.FromDirectory(dir));
        Assert.Equal("Hi there<|im_end|>", template.Render([User], false));
        var bare = HfTokenizer.FromDirectory(TokenizerFixtures.WriteByteLevel(TokenizerFixtures.TempDir("nochat"), llama3: true));
        Assert.Contains("--chat-template", Assert.Throws<ChatTemplateException>(() => ChatTemplate.FromTokenizer(bare)).Message);
    }

    /// <summary>
    /// tojson as transformers' (json.dumps, ensure_ascii=False): the quote, the backslash and control characters escaped,
    /// everything else as it is — an emoji too, which System.Text.Json would write as two \u escapes.
    /// </summary>
    [Fact]
    public void Tojson_writes_characters_as_python_json_dumps_does()
    {
        var template = ChatTemplate.FromSource("{{ messages[0].tool_calls[0].function.arguments | tojson }}", null, null);
        var arguments = JsonNode.Parse("""{"city": "Paris \ud83d\ude00 é 你", "q": "a\"b\\c\n\t\u0001\u007f\u2028"}""");
        var rendered = template.Render([ChatMessage.AssistantToolCalls("", new ToolCall("c1", "get_weather", arguments))], addGenerationPrompt: false);
        Assert.Equal("{\"city\": \"Paris 😀 é 你\", \"q\": \"a\\\"b\\\\c\\n\\t\\u0001\u007f\u2028\"}", rendered);
    }

    /// <summary>
    /// A tool-calling turn with null content: None for a template that tests for it (DeepSeek's writes the calls only
    /// then), "" for one that reads the content as a string (Qwen3's <c>'&lt;/think&gt;' in message.content</c>, which
    /// fails on None under transformers too).
    /// </summary>
    [Fact]
    public void Null_content_is_none_where_the_template_tests_for_it_and_empty_elsewhere()
    {
        var messages = ChatJson.ReadMessages(JsonNode.Parse("""
            [{"role": "user", "content": "Weather?"},
             {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}]
            """), "messages");
        Assert.True(messages[1].ContentIsNull);
        var deepSeekStyle = ChatTemplate.FromSource(
            "{% for m in messages %}{% if m['role'] == 'assistant' and m['content'] is none %}<calls>{{ m.tool_calls[0].function.name }}"
            + "{% else %}<{{ m.role }}>{{ m.content }}{% endif %}{% endfor %}", null, null);
        Assert.Equal("<user>Weather?<calls>get_weather", deepSeekStyle.Render(messages, addGenerationPrompt: false));
        var qwenStyle = ChatTemplate.FromSource(
            "{% for m in messages %}{% if '</think>' in m.content %}think{% endif %}<{{ m.role }}>{{ m.content }}{% endfor %}", null, null);
        Assert.Equal("<user>Weather?<assistant>", qwenStyle.Render(messages, addGenerationPrompt: false));
        // The wire form keeps the null.
        Assert.Null(ChatJson.ToJson(messages[1])["content"]);
    }

    /// <summary>Fields the reader does not interpret reach the template whole, as transformers passes a message dict
    /// (gpt-oss's template reads an assistant turn's <c>thinking</c>), and stay in the wire form.</summary>
    [Fact]
    public void A_messages_other_fields_reach_the_template()
    {
        var messages = ChatJson.ReadMessages(JsonNode.Parse("""
            [{"role": "assistant", "content": "4", "thinking": "2 + 2", "meta": {"n": 1}}]
            """), "messages");
        var template = ChatTemplate.FromSource("{{ 'thinking' in messages[0] }}|{{ messages[0].thinking }}|{{ messages[0].meta.n }}", null, null);
        Assert.Equal("True|2 + 2|1", template.Render(messages, addGenerationPrompt: false));
        Assert.Equal("2 + 2", ChatJson.ToJson(messages[0])["thinking"]!.GetValue<string>());
    }

    /// <summary>
    /// Named templates (Cohere's Command R and Aya ship default, tool_use and rag): with tools the tool_use one renders,
    /// as transformers' apply_chat_template picks it; without, the default. Saved beside an adapter as transformers saves
    /// them (chat_template.jinja, additional_chat_templates/tool_use.jinja), both come back.
    /// </summary>
    [Fact]
    public void The_tool_use_template_renders_when_tools_are_given_and_is_saved_beside_the_default()
    {
        var dir = Directory.CreateTempSubdirectory("named-templates").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """
                {"bos_token": "<B>", "eos_token": "<E>", "chat_template": [
                  {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}"},
                  {"name": "tool_use", "template": "{{ bos_token }}tools:{% for t in tools %}{{ t.function.name }}{% endfor %}{% for m in messages %}[{{ m.content }}]{% endfor %}"},
                  {"name": "rag", "template": "rag"}]}
                """);
            var template = ChatTemplate.FromModelDirectory(dir);
            ChatMessage[] messages = [new("user", "hi")];
            var tools = ChatJson.ReadTools(JsonNode.Parse("""[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]"""), "tools");
            Assert.Equal("<B>[hi]", template.Render(messages, addGenerationPrompt: false));
            Assert.Equal("<B>tools:get_weather[hi]", template.Render(messages, addGenerationPrompt: false, tools));
            Assert.Equal("<B>tools:get_weather[hi]", template.RenderWithAssistantSpans(messages, tools).Text);

            var saved = Directory.CreateDirectory(Path.Combine(dir, "adapter")).FullName;
            template.Save(saved);
            Assert.True(File.Exists(Path.Combine(saved, "additional_chat_templates", "tool_use.jinja")));
            var loaded = ChatTemplate.FromSaved(saved, "<B>", "<E>")!;
            Assert.Equal("<B>[hi]", loaded.Render(messages, addGenerationPrompt: false));
            Assert.Equal("<B>tools:get_weather[hi]", loaded.Render(messages, addGenerationPrompt: false, tools));
            // A folder saved that way reads the same through the tokenizer-config path.
            Assert.Equal(template.ToolUseSource, ChatTemplate.FromModelDirectory(saved).ToolUseSource);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
