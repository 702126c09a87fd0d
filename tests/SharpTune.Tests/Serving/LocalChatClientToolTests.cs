using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Microsoft.Extensions.AI;
using SharpTune.Serving;
using SharpTune.Tests.Server;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatMessage = SharpTune.Tokenization.ChatMessage;

namespace SharpTune.Tests.Serving;

/// <summary>The random-weight tiny Llama with Qwen3's chat template, loaded once as a <see cref="LocalChatClient"/>.</summary>
public sealed class RandomQwenChatClientFixture : IDisposable
{
    private readonly TempDir temp = new();

    public RandomQwenChatClientFixture()
    {
        if (!AgentServerFixture.Available) return;
        AgentServerFixture.CreateRandomQwenChatModel(ModelDir);
        Client = LocalChatClient.Load(ModelDir);
    }

    public string ModelDir => Path.Combine(temp.Path, "random-qwen-chat");

    public LocalChatClient Client { get; } = null!;

    public void Dispose()
    {
        Client?.Dispose();
        temp.Dispose();
    }
}

/// <summary>
/// Tool calling in-process: Microsoft.Extensions.AI's <see cref="FunctionInvokingChatClient"/> drives a real round trip
/// over <see cref="LocalChatClient"/> (the call forced by <see cref="ChatToolMode.RequireAny"/>, so a random model makes
/// it deterministically), and the conversation it sends back renders exactly as the template renders the same turns.
/// </summary>
public sealed class LocalChatClientToolTests(RandomQwenChatClientFixture fixture) : IClassFixture<RandomQwenChatClientFixture>
{
    /// <summary>Records what each inner call received and answered.</summary>
    private sealed class RecordingClient(IChatClient inner) : DelegatingChatClient(inner)
    {
        /// <remarks>The answer is copied at once: function invocation later reuses the last response object for its own result
        /// (every message of the loop, every call's usage folded in).</remarks>
        public List<(List<AIChatMessage> Messages, ChatOptions? Options, List<AIContent> Contents, ChatFinishReason? Finish, long? PromptTokens)> Calls { get; } = [];

        public override async Task<ChatResponse> GetResponseAsync(IEnumerable<AIChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var list = messages.ToList();
            var response = await base.GetResponseAsync(list, options, cancellationToken);
            Calls.Add((list, options, response.Messages.SelectMany(m => m.Contents).ToList(), response.FinishReason, response.Usage?.InputTokenCount));
            return response;
        }
    }

    [AgentServerFact]
    public async Task APythonicTemplatesForcedCallIsWrittenAndReadAsVllmForcesOne()
    {
        // A template asking for [func_name1(...)] reads replies as Python calls; a forced call is JSON, as vLLM forces it.
        const string pythonic = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" +
                                "Respond in the format [func_name1(params_name1=params_value1), func_name2(params)] using {{ tools | tojson }}\nassistant: ";
        using var client = LocalChatClient.Load(fixture.ModelDir, options: new LocalChatClientOptions { ChatTemplate = ChatTemplate.FromSource(pythonic, "<s>", "</s>") });
        var weather = AIFunctionFactory.Create((string city) => "sunny", "get_weather", "Current weather in a city");
        var response = await client.GetResponseAsync("Is it raining in Paris?",
            new ChatOptions { Tools = [weather], ToolMode = ChatToolMode.RequireAny, Temperature = 1, Seed = 5, MaxOutputTokens = 80 });
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        var call = Assert.Single(response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.Equal(JsonValueKind.String, ((JsonElement)call.Arguments!["city"]!).ValueKind);
    }

    [AgentServerFact]
    public async Task FunctionInvocationRunsTheForcedCallAndSendsItsResultBack()
    {
        var invoked = new List<string>();
        var weather = AIFunctionFactory.Create((string city) =>
        {
            invoked.Add(city);
            return $"18 degrees and clear in {city}";
        }, "get_weather", "Current weather in a city");
        var recording = new RecordingClient(fixture.Client);
        // Not disposed: a delegating client disposes its inner client, and the fixture's client is shared.
        var client = new ChatClientBuilder(recording).UseFunctionInvocation().Build();

        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "What is the weather in Paris?")],
            new ChatOptions { Tools = [weather], ToolMode = ChatToolMode.RequireAny, Temperature = 1, Seed = 5, MaxOutputTokens = 80 });

        var city = Assert.Single(invoked);
        Assert.Equal(2, recording.Calls.Count);
        var first = recording.Calls[0];
        Assert.Equal(ChatFinishReason.ToolCalls, first.Finish);
        var call = Assert.Single(first.Contents.OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.StartsWith("call_", call.CallId);
        Assert.Equal(city, ((JsonElement)call.Arguments!["city"]!).GetString());

        // The second request: the tool mode no longer required, the call and its result in the history.
        var (messages, options, answer, finish, promptTokens) = recording.Calls[1];
        Assert.Null(options!.ToolMode);
        var result = Assert.Single(messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>());
        Assert.Equal(call.CallId, result.CallId);
        var tool = ChatTool.Function("get_weather", "Current weather in a city", JsonNode.Parse(weather.JsonSchema.GetRawText())!.AsObject());
        ChatMessage[] turns =
        [
            new("user", "What is the weather in Paris?"),
            new("assistant", "") { ToolCalls = [new ToolCall(call.CallId, "get_weather", new JsonObject { ["city"] = city })] },
            ChatMessage.ToolResult(call.CallId, $"18 degrees and clear in {city}", "get_weather"),
        ];
        var tokenizer = HfTokenizer.FromDirectory(fixture.ModelDir);
        var expectedText = fixture.Client.ChatTemplate!.Render(turns, addGenerationPrompt: true, [tool]);
        Assert.Equal(expectedText, fixture.Client.ChatTemplate.Render(ChatContentMapping.ToTurns(messages), addGenerationPrompt: true, ChatContentMapping.Tools(options)));
        var expected = tokenizer.Encode(expectedText, addSpecialTokens: false);
        Assert.Equal(expected.Count, promptTokens);
        Assert.Empty(answer.OfType<FunctionCallContent>());
        Assert.NotEqual(ChatFinishReason.ToolCalls, finish);

        // What the caller gets: the call, the result, then the answer.
        Assert.Equal([ChatRole.Assistant, ChatRole.Tool, ChatRole.Assistant], response.Messages.Select(m => m.Role));
    }

    [AgentServerFact]
    public async Task StreamingANamedCallYieldsOneFunctionCallAndNoText()
    {
        var time = AIFunctionFactory.Create((string city) => "12:00", "get_time", "Local time in a city");
        var weather = AIFunctionFactory.Create((string city, string unit) => "18", "get_weather", "Current weather in a city");
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in fixture.Client.GetStreamingResponseAsync([new AIChatMessage(ChatRole.User, "Time in Oslo?")],
            new ChatOptions { Tools = [weather, time], ToolMode = ChatToolMode.RequireSpecific("get_time"), Temperature = 1, Seed = 3, MaxOutputTokens = 80 }))
            updates.Add(update);

        var call = Assert.Single(updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_time", call.Name);
        Assert.Equal(JsonValueKind.String, ((JsonElement)call.Arguments!["city"]!).ValueKind);
        Assert.DoesNotContain(updates.SelectMany(u => u.Contents).OfType<TextContent>(), t => t.Text.Trim().Length > 0);
        Assert.Equal(ChatFinishReason.ToolCalls, updates.Last().FinishReason);
    }

    [AgentServerFact]
    public async Task JsonSchemaResponseFormatValidatesOnEverySeed()
    {
        const string schemaText = """{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"pets":{"type":"array","items":{"enum":["cat","dog"]}}},"required":["name","age","pets"],"additionalProperties":false}""";
        var schema = JsonSchema.FromText(schemaText);
        var format = ChatResponseFormat.ForJsonSchema(JsonDocument.Parse(schemaText).RootElement, "person");
        for (var seed = 0; seed < 8; seed++)
        {
            var response = await fixture.Client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Describe a person.")],
                new ChatOptions { ResponseFormat = format, Temperature = 1, Seed = seed, MaxOutputTokens = 48 });
            using var document = JsonDocument.Parse(response.Text);
            Assert.True(schema.Evaluate(document.RootElement).IsValid, $"seed {seed}: {response.Text}");
        }
    }
}
