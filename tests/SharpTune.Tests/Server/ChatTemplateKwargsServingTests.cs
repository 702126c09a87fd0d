using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Server;
using SharpTune.Server.Api;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Server;

/// <summary>
/// vLLM's chat template request fields on the server: <c>chat_template_kwargs</c> (over
/// <c>--default-chat-template-kwargs</c>), <c>add_generation_prompt</c> and <c>continue_final_message</c>. The served model
/// (<see cref="AgentServerFixture"/>) renders with Qwen3's real template, so what the model sees is checked through
/// <c>usage.prompt_tokens</c>: the token count of the rendering transformers' apply_chat_template gives for the same
/// request (jinja2 3.1.6, see <see cref="Tokenization.ChatTemplateArgumentsTests"/>), encoded by the served tokenizer.
/// </summary>
public sealed class ChatTemplateKwargsServingTests(AgentServerFixture fixture) : IClassFixture<AgentServerFixture>
{
    private const string Question = """[{"role":"user","content":"Summarise: the cat sat."}]""";
    private const string Prompt = "<|im_start|>user\nSummarise: the cat sat.<|im_end|>\n<|im_start|>assistant\n";
    private const string EmptyThink = "<think>\n\n</think>\n\n";

    private static int Tokens(string rendering) =>
        HfTokenizer.FromDirectory(TestAssets.Stories260K).Encode(rendering, addSpecialTokens: false).Count;

    private static async Task<(int Status, JsonNode Body)> PostAsync(HttpClient http, string extraFields, string messages = Question)
    {
        var body = $$"""{"model":"random-qwen-chat","messages":{{messages}},"max_tokens":1,"temperature":0{{extraFields}}}""";
        var response = await http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        return ((int)response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
    }

    private static int PromptTokens(JsonNode body) => (int)body["usage"]!["prompt_tokens"]!;

    [AgentServerFact]
    public async Task Chat_template_kwargs_change_the_prompt_the_model_sees()
    {
        using var http = fixture.Http();
        var (status, plain) = await PostAsync(http, "");
        Assert.Equal(200, status);
        Assert.Equal(Tokens(Prompt), PromptTokens(plain));
        var (_, thinkingOff) = await PostAsync(http, ""","chat_template_kwargs":{"enable_thinking":false}""");
        Assert.Equal(Tokens(Prompt + EmptyThink), PromptTokens(thinkingOff));
        Assert.True(PromptTokens(thinkingOff) > PromptTokens(plain));
        var (_, thinkingOn) = await PostAsync(http, ""","chat_template_kwargs":{"enable_thinking":true}""");
        Assert.Equal(Tokens(Prompt), PromptTokens(thinkingOn));
        // vLLM's build_chat_params: reasoning_effort "none" turns thinking off unless the kwargs say otherwise.
        Assert.Equal(Tokens(Prompt + EmptyThink), PromptTokens((await PostAsync(http, ""","reasoning_effort":"none" """)).Body));
        Assert.Equal(Tokens(Prompt), PromptTokens((await PostAsync(http, ""","reasoning_effort":"low" """)).Body));
        Assert.Equal(Tokens(Prompt), PromptTokens((await PostAsync(http, ""","reasoning_effort":"none","chat_template_kwargs":{"enable_thinking":true}""")).Body));
    }

    [AgentServerFact]
    public async Task Add_generation_prompt_false_and_continue_final_message_end_the_prompt_where_vllm_ends_it()
    {
        using var http = fixture.Http();
        var (_, noHeader) = await PostAsync(http, ""","add_generation_prompt":false""");
        Assert.Equal(Tokens("<|im_start|>user\nSummarise: the cat sat.<|im_end|>\n"), PromptTokens(noHeader));
        var (status, continued) = await PostAsync(http, ""","add_generation_prompt":false,"continue_final_message":true""",
            """[{"role":"user","content":"Name a colour."},{"role":"assistant","content":"The colour is"}]""");
        Assert.Equal(200, status);
        Assert.Equal(Tokens("<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n" + EmptyThink + "The colour is"), PromptTokens(continued));
    }

    [AgentServerFact]
    public async Task Malformed_template_fields_are_400s_naming_the_field()
    {
        using var http = fixture.Http();
        foreach (var (fields, param) in new[]
        {
            (""","chat_template_kwargs":"enable_thinking=false" """, "chat_template_kwargs"),
            (""","chat_template_kwargs":[{"enable_thinking":false}]""", "chat_template_kwargs"),
            (""","chat_template_kwargs":{"tokenize":true}""", "chat_template_kwargs.tokenize"),
            (""","add_generation_prompt":"no" """, "add_generation_prompt"),
            (""","continue_final_message":true""", "continue_final_message"),
            (""","continue_final_message":true,"add_generation_prompt":true""", "continue_final_message"),
            (""","reasoning_effort":"extreme" """, "reasoning_effort"),
            (""","documents":[1]""", "documents"),
        })
        {
            var (status, body) = await PostAsync(http, fields);
            Assert.Equal(400, status);
            Assert.Equal(param, (string)body["error"]!["param"]!);
        }
    }

    [AgentServerFact]
    public async Task The_servers_default_kwargs_apply_unless_the_request_overrides_them()
    {
        using var temp = new TempDir();
        var dir = Path.Combine(temp.Path, "random-qwen-chat");
        AgentServerFixture.CreateRandomQwenChatModel(dir);
        await using var server = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = dir, Port = 0, ApiKeys = [ServerFixture.Key],
            DefaultChatTemplateKwargs = ChatTemplateArguments.Parse("""{"enable_thinking": false}""", "--default-chat-template-kwargs"),
        });
        using var http = new HttpClient { BaseAddress = server.Url };
        http.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
        Assert.Equal(Tokens(Prompt + EmptyThink), PromptTokens((await PostAsync(http, "")).Body));
        Assert.Equal(Tokens(Prompt), PromptTokens((await PostAsync(http, ""","chat_template_kwargs":{"enable_thinking":true}""")).Body));
        // vLLM's merge: a null in the request leaves the server's default.
        Assert.Equal(Tokens(Prompt + EmptyThink), PromptTokens((await PostAsync(http, ""","chat_template_kwargs":{"enable_thinking":null}""")).Body));
    }

    [AgentServerFact]
    public async Task Serve_takes_the_default_kwargs_on_the_command_line()
    {
        using var temp = new TempDir();
        var dir = Path.Combine(temp.Path, "random-qwen-chat");
        AgentServerFixture.CreateRandomQwenChatModel(dir);
        await using var server = await Serving.SharpTuneCli.StartServeAsync("--model", dir, "--port", "0", "--api-key", ServerFixture.Key,
            "--default-chat-template-kwargs", """{"enable_thinking": false}""");
        using var http = new HttpClient { BaseAddress = server.Url };
        http.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
        Assert.Equal(Tokens(Prompt + EmptyThink), PromptTokens((await PostAsync(http, "")).Body));
    }

    [Fact]
    public void The_parser_reads_the_template_fields_with_vllms_defaults()
    {
        var plain = CompletionRequestParser.Parse(JsonNode.Parse("""{"model":"m","messages":[{"role":"user","content":"x"}]}"""), chat: true, maxN: 1);
        Assert.Equal((null, true, false), (plain.ChatTemplateKwargs, plain.AddGenerationPrompt, plain.ContinueFinalMessage));
        var full = CompletionRequestParser.Parse(JsonNode.Parse("""
            {"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],
             "chat_template_kwargs":{"enable_thinking":false,"documents":[{"title":"t"}]},"add_generation_prompt":false,"continue_final_message":true}
            """), chat: true, maxN: 1);
        Assert.Equal(false, full.ChatTemplateKwargs!["enable_thinking"]);
        Assert.Equal((false, true), (full.AddGenerationPrompt, full.ContinueFinalMessage));
        var topLevel = CompletionRequestParser.Parse(JsonNode.Parse("""
            {"model":"m","messages":[{"role":"user","content":"x"}],"documents":[{"title":"t","text":"d"}],"reasoning_effort":"none",
             "chat_template_kwargs":{"reasoning_effort":"high","documents":null}}
            """), chat: true, maxN: 1);
        Assert.Equal(("none", false), (topLevel.ChatTemplateKwargs!["reasoning_effort"], topLevel.ChatTemplateKwargs["enable_thinking"]));
        var document = Assert.IsType<Dictionary<string, object?>>(Assert.Single(Assert.IsType<List<object?>>(topLevel.ChatTemplateKwargs["documents"])));
        Assert.Equal("d", document["text"]);
        var nullKwargs = CompletionRequestParser.Parse(JsonNode.Parse("""{"model":"m","messages":[{"role":"user","content":"x"}],"chat_template_kwargs":null}"""), chat: true, maxN: 1);
        Assert.Null(nullKwargs.ChatTemplateKwargs);
    }
}
