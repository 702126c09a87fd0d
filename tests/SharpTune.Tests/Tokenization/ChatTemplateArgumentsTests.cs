using System.Text.Json;
using System.Text.Json.Nodes;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Tokenization;

/// <summary>
/// Chat template keyword arguments (<c>chat_template_kwargs</c>) and <c>continue_final_message</c> on the real Qwen3 and
/// Llama 3 templates. Expected strings are transformers' <c>apply_chat_template(messages, add_generation_prompt=…,
/// continue_final_message=…, tokenize=False, **kwargs)</c> reproduced with Python jinja2 3.1.6: chat_template_utils'
/// _compile_jinja_template environment (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, its
/// tojson and raise_exception), rendered with the tokenizer's special_tokens_map plus the kwargs, then
/// render_jinja_template's continue_final_message cut (/tmp/sweep-kwargs/render.py).
/// </summary>
public sealed class ChatTemplateArgumentsTests
{
    private static readonly Lazy<ChatTemplate> Qwen3 = new(() => ChatTemplate.FromModelDirectory(TestAssets.Tokenizer("qwen3")));

    private static readonly ChatMessage[] Summarise = [new("user", "Summarise: the cat sat.")];

    private const string SummarisePrompt = "<|im_start|>user\nSummarise: the cat sat.<|im_end|>\n<|im_start|>assistant\n";
    private const string EmptyThink = "<think>\n\n</think>\n\n";

    private static IReadOnlyDictionary<string, object?> Kwargs(string json) => ChatTemplateArguments.Parse(json, "chat_template_kwargs")!;

    [SharedAssetFact("tokenizers/qwen3")]
    public void Qwen3_enable_thinking_false_opens_an_empty_think_block_in_the_generation_prompt_as_transformers_renders_it()
    {
        Assert.Equal(SummarisePrompt + EmptyThink, Qwen3.Value.Render(Summarise, true, templateArguments: Kwargs("""{"enable_thinking": false}""")));
        Assert.Equal(SummarisePrompt, Qwen3.Value.Render(Summarise, true, templateArguments: Kwargs("""{"enable_thinking": true}""")));
        Assert.Equal(SummarisePrompt, Qwen3.Value.Render(Summarise, true));
        ChatMessage[] longer = [new("system", "Answer in French."), new("user", "Hello"), new("assistant", "Bonjour"), new("user", "And goodbye?")];
        Assert.Equal("<|im_start|>system\nAnswer in French.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nBonjour<|im_end|>\n" +
                     "<|im_start|>user\nAnd goodbye?<|im_end|>\n<|im_start|>assistant\n" + EmptyThink,
            Qwen3.Value.Render(longer, true, templateArguments: Kwargs("""{"enable_thinking": false}""")));
        // Without the generation prompt the kwarg changes nothing: Qwen3 writes the empty block into the last reply anyway.
        Assert.Equal("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n" + EmptyThink + "4<|im_end|>\n",
            Qwen3.Value.Render([new("user", "What is 2+2?"), new("assistant", "4")], false, templateArguments: Kwargs("""{"enable_thinking": false}""")));
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void A_templates_own_arguments_apply_to_every_rendering_and_a_calls_arguments_override_them_key_by_key()
    {
        var thinkingOff = Qwen3.Value.WithArguments(Kwargs("""{"enable_thinking": false}"""));
        Assert.Equal(SummarisePrompt + EmptyThink, thinkingOff.Render(Summarise, true));
        Assert.Equal(SummarisePrompt, thinkingOff.Render(Summarise, true, templateArguments: Kwargs("""{"enable_thinking": true}""")));
        // vLLM's merge_kwargs: a null (or "auto") override leaves the default in place.
        Assert.Equal(SummarisePrompt + EmptyThink, thinkingOff.Render(Summarise, true, templateArguments: Kwargs("""{"enable_thinking": null}""")));
        // Spans for training use the same arguments: the reply starts after the empty block the prompt now carries.
        var spans = thinkingOff.RenderWithAssistantSpans([new("user", "What is 2+2?"), new("assistant", "4")]);
        var span = Assert.Single(spans.AssistantSpans);
        Assert.Equal("4<|im_end|>\n", spans.Text[span.Start..span.End]);
        Assert.Null(Qwen3.Value.Arguments);
    }

    [SharedAssetFact("tokenizers/qwen3")]
    public void Continue_final_message_ends_the_prompt_inside_the_final_reply_as_transformers_cuts_it()
    {
        const string head = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n" + EmptyThink;
        Assert.Equal(head + "The colour is", Qwen3.Value.Render([new("user", "Name a colour."), new("assistant", "The colour is")], false, continueFinalMessage: true));
        // Qwen3 keeps the trailing space, so the cut keeps it too.
        Assert.Equal(head + "The colour is ", Qwen3.Value.Render([new("user", "Name a colour."), new("assistant", "The colour is ")], false, continueFinalMessage: true));
        Assert.Equal(head + "The colour is", Qwen3.Value.Render([new("user", "Name a colour."), new("assistant", "The colour is")], false,
            templateArguments: Kwargs("""{"enable_thinking": false}"""), continueFinalMessage: true));
        Assert.Throws<ArgumentException>(() => Qwen3.Value.Render(Summarise, true, continueFinalMessage: true));
    }

    [SharedAssetFact("tokenizers/llama3")]
    public void Continue_final_message_cuts_after_the_stripped_text_where_the_template_trims_it()
    {
        // Llama 3's template trims message content: transformers then cuts after the stripped text.
        var llama3 = ChatTemplate.FromModelDirectory(TestAssets.Tokenizer("llama3"));
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nThe colour is",
            llama3.Render([new("user", "Name a colour."), new("assistant", "The colour is ")], false,
                templateArguments: Kwargs("""{"date_string": "26 Jul 2024"}"""), continueFinalMessage: true));
    }

    [Fact]
    public void A_final_message_the_template_does_not_write_cannot_be_continued()
    {
        var dropsAssistant = ChatTemplate.FromSource("{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}", null, null);
        var e = Assert.Throws<ChatTemplateException>(() => dropsAssistant.Render([new("user", "Hi"), new("assistant", "Partial")], false, continueFinalMessage: true));
        Assert.Contains("continue_final_message", e.Message);
    }

    [Theory]
    [InlineData("""[1]""", "chat_template_kwargs", "wrong_type")]
    [InlineData("""true""", "chat_template_kwargs", "wrong_type")]
    [InlineData("""{"enable_thinking": false""", "chat_template_kwargs", "invalid_value")]
    [InlineData("""{"tokenize": true}""", "chat_template_kwargs.tokenize", "invalid_value")]
    [InlineData("""{"chat_template": "{{ x }}"}""", "chat_template_kwargs.chat_template", "invalid_value")]
    public void Malformed_arguments_are_refused_naming_the_field(string json, string field, string reason)
    {
        var e = Assert.Throws<ChatFormatException>(() => ChatTemplateArguments.Parse(json, "chat_template_kwargs"));
        Assert.Equal((field, reason), (e.Field, e.Reason));
    }

    [Fact]
    public void Arguments_come_from_json_dictionaries_and_json_elements_alike_and_merge_as_vllm_merges_them()
    {
        var fromJson = ChatTemplateArguments.FromJson(JsonNode.Parse("""{"enable_thinking": false, "n": 3, "tags": ["a"]}"""), "f")!;
        var fromDictionary = ChatTemplateArguments.FromObject(new Dictionary<string, object?> { ["enable_thinking"] = false, ["n"] = 3, ["tags"] = new[] { "a" } }, "f")!;
        var fromElement = ChatTemplateArguments.FromObject(JsonDocument.Parse("""{"enable_thinking": false, "n": 3, "tags": ["a"]}""").RootElement, "f")!;
        var template = ChatTemplate.FromSource("{{ enable_thinking }} {{ n + 1 }} {{ tags[0] }}", null, null);
        foreach (var arguments in new[] { fromJson, fromDictionary, fromElement })
            Assert.Equal("False 4 a", template.Render([new("user", "x")], false, templateArguments: arguments));
        Assert.Null(ChatTemplateArguments.FromObject(null, "f"));
        Assert.Throws<ChatFormatException>(() => ChatTemplateArguments.FromObject(42, "f"));

        var merged = ChatTemplateArguments.Merge(Kwargs("""{"a": 1, "b": 2, "c": 3}"""), Kwargs("""{"a": 10, "b": null, "c": "auto", "d": 4}"""))!;
        Assert.Equal(new Dictionary<string, object?> { ["a"] = 10L, ["b"] = 2L, ["c"] = 3L, ["d"] = 4L }.OrderBy(p => p.Key),
            merged.OrderBy(p => p.Key).Select(p => new KeyValuePair<string, object?>(p.Key, Convert.ToInt64(p.Value))));
    }
}
