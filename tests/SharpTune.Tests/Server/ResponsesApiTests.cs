#pragma warning disable OPENAI001
#pragma warning disable SCME0001   // JsonPatch: the SDK's way to send a field it does not model (seed, a SharpTune extension here)
using System.ClientModel;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using OpenAI.Responses;
using SharpTune.Server;
using SharpTune.Tests.Support;
using ChatMessage = SharpTune.Tokenization.ChatMessage;
using HfTokenizer = SharpTune.Tokenization.HfTokenizer;
using ToolCall = SharpTune.Tokenization.ToolCall;

namespace SharpTune.Tests.Server;

/// <summary>
/// The Responses API driven by the official OpenAI .NET SDK's <see cref="ResponsesClient"/> against the random-weight
/// Qwen3-template server: forced function calls, a tool round trip through <c>previous_response_id</c> and through
/// resent items (both must render exactly the conversation transformers' template would), streamed events in OpenAI's
/// order, and strict JSON output.
/// </summary>
public sealed class ResponsesApiTests(AgentServerFixture fixture) : IClassFixture<AgentServerFixture>
{
    private const string WeatherParameters =
        """{"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}""";

    private static ResponseTool Weather => ResponseTool.CreateFunctionTool("get_weather", BinaryData.FromString(WeatherParameters), strictModeEnabled: true,
        "Current weather in a city");

    private ResponsesClient Client() => new(new ApiKeyCredential(ServerFixture.Key), new ResponsesClientOptions { Endpoint = fixture.Server.OpenAiEndpoint });

    /// <summary>Prompt tokens of the conversation as the served template renders it with the weather tool.</summary>
    private int PromptTokens(IReadOnlyList<ChatMessage> messages, bool withTool = true)
    {
        var tokenizer = HfTokenizer.FromDirectory(fixture.ModelDir);
        var tool = SharpTune.Tokenization.ChatTool.Function("get_weather", "Current weather in a city", JsonNode.Parse(WeatherParameters)!.AsObject());
        return ChatPromptFormat.ForModel(tokenizer, null).Encode(messages, tokenizer, withTool ? [tool] : null).Count;
    }

    [AgentServerFact]
    public async Task ForcedCallThenToolOutputContinuesTheStoredConversation()
    {
        var question = ResponseItem.CreateUserMessageItem("What is the weather in Paris?");
        var firstOptions = new CreateResponseOptions("random-qwen-chat", [question])
        {
            Instructions = "You answer weather questions.",
            Tools = { Weather },
            ToolChoice = ResponseToolChoice.CreateRequiredChoice(),
            MaxOutputTokenCount = 200,
            Temperature = 1,
        };
        firstOptions.Patch.Set("$.seed"u8, 5);
        var first = (await Client().CreateResponseAsync(firstOptions)).Value;

        Assert.StartsWith("resp_", first.Id);
        Assert.Equal(ResponseStatus.Completed, first.Status);
        var call = Assert.IsType<FunctionCallResponseItem>(Assert.Single(first.OutputItems));
        Assert.Equal("get_weather", call.FunctionName);
        Assert.StartsWith("call_", call.CallId);
        Assert.StartsWith("fc_", call.Id);
        using (var arguments = JsonDocument.Parse(call.FunctionArguments.ToString()))
        {
            Assert.Equal(JsonValueKind.String, arguments.RootElement.GetProperty("city").ValueKind);
            Assert.Contains(arguments.RootElement.GetProperty("unit").GetString(), new[] { "c", "f" });
        }
        var withInstructions = PromptTokens([new ChatMessage("system", "You answer weather questions."), new ChatMessage("user", "What is the weather in Paris?")]);
        Assert.Equal(withInstructions, first.Usage.InputTokenCount);
        Assert.Equal(first.Usage.InputTokenCount + first.Usage.OutputTokenCount, first.Usage.TotalTokenCount);

        var fetched = (await Client().GetResponseAsync(first.Id)).Value;
        Assert.Equal(call.CallId, Assert.IsType<FunctionCallResponseItem>(Assert.Single(fetched.OutputItems)).CallId);

        // The tool's result, continuing the stored response: instructions are not carried over (as OpenAI documents).
        var result = ResponseItem.CreateFunctionCallOutputItem(call.CallId, """{"temperature": 18, "sky": "clear"}""");
        var answer = (await Client().CreateResponseAsync(new CreateResponseOptions("random-qwen-chat", [result])
        {
            PreviousResponseId = first.Id, Tools = { Weather }, ToolChoice = ResponseToolChoice.CreateNoneChoice(), MaxOutputTokenCount = 16, Temperature = 0,
        })).Value;
        Assert.Equal(first.Id, answer.PreviousResponseId);
        var message = Assert.IsAssignableFrom<MessageResponseItem>(Assert.Single(answer.OutputItems));
        Assert.Equal(answer.GetOutputText(), message.Content.Single().Text);
        Assert.NotEmpty(answer.GetOutputText());
        var conversation = new List<ChatMessage>
        {
            new("user", "What is the weather in Paris?"),
            ChatMessage.AssistantToolCalls("", ToolCall.FromJsonText(call.CallId, "get_weather", call.FunctionArguments.ToString())),
            ChatMessage.ToolResult(call.CallId, """{"temperature": 18, "sky": "clear"}""", "get_weather"),
        };
        Assert.Equal(PromptTokens(conversation), answer.Usage.InputTokenCount);

        // The same turn without stored state: the client resends the question, the call item and the result.
        var stateless = (await Client().CreateResponseAsync(new CreateResponseOptions("random-qwen-chat", [question, .. first.OutputItems, result])
        {
            Tools = { Weather }, ToolChoice = ResponseToolChoice.CreateNoneChoice(), MaxOutputTokenCount = 16, Temperature = 0, StoredOutputEnabled = false,
        })).Value;
        Assert.Equal(answer.Usage.InputTokenCount, stateless.Usage.InputTokenCount);
        Assert.Equal(answer.GetOutputText(), stateless.GetOutputText());
        await Assert.ThrowsAsync<ClientResultException>(() => Client().GetResponseAsync(stateless.Id));
    }

    [AgentServerFact]
    public async Task StreamedFunctionCallArrivesAsOpenAiOrdersTheEvents()
    {
        var options = new CreateResponseOptions("random-qwen-chat", [ResponseItem.CreateUserMessageItem("Weather in Oslo?")])
        {
            Tools = { Weather }, ToolChoice = ResponseToolChoice.CreateFunctionChoice("get_weather"), MaxOutputTokenCount = 200, Temperature = 1, StreamingEnabled = true,
        };
        options.Patch.Set("$.seed"u8, 11);
        var updates = new List<StreamingResponseUpdate>();
        await foreach (var update in await Client().CreateResponseStreamingAsync(options)) updates.Add(update);

        Assert.Equal(Enumerable.Range(0, updates.Count), updates.Select(u => u.SequenceNumber));
        Assert.Equal(
            ["Created", "InProgress", "OutputItemAdded", "FunctionCallArgumentsDelta", "FunctionCallArgumentsDone", "OutputItemDone", "Completed"],
            updates.Select(u => u.GetType().Name["StreamingResponse".Length..^"Update".Length]));
        var added = Assert.IsType<FunctionCallResponseItem>(((StreamingResponseOutputItemAddedUpdate)updates[2]).Item);
        var delta = ((StreamingResponseFunctionCallArgumentsDeltaUpdate)updates[3]).Delta.ToString();
        var done = Assert.IsType<FunctionCallResponseItem>(((StreamingResponseOutputItemDoneUpdate)updates[5]).Item);
        var completed = ((StreamingResponseCompletedUpdate)updates[6]).Response;
        Assert.Equal("get_weather", added.FunctionName);
        Assert.Equal(added.Id, done.Id);
        Assert.Equal(delta, done.FunctionArguments.ToString());
        using (var arguments = JsonDocument.Parse(delta)) Assert.True(arguments.RootElement.TryGetProperty("city", out _));
        var final = Assert.IsType<FunctionCallResponseItem>(Assert.Single(completed.OutputItems));
        Assert.Equal((done.CallId, delta), (final.CallId, final.FunctionArguments.ToString()));
        Assert.Equal(ResponseStatus.Completed, completed.Status);
        Assert.True(completed.Usage.OutputTokenCount > 0);
    }

    [AgentServerFact]
    public async Task StreamedStrictJsonSchemaTextValidatesAndMatchesTheFinalResponse()
    {
        const string schemaText = """{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}""";
        var options = new CreateResponseOptions("random-qwen-chat", [ResponseItem.CreateUserMessageItem("Describe a person.")])
        {
            TextOptions = new ResponseTextOptions { TextFormat = ResponseTextFormat.CreateJsonSchemaFormat("person", BinaryData.FromString(schemaText), jsonSchemaIsStrict: true) },
            MaxOutputTokenCount = 60, Temperature = 1, StreamingEnabled = true,
        };
        options.Patch.Set("$.seed"u8, 3);
        var kinds = new List<string>();
        var deltas = new StringBuilder();
        string? doneText = null;
        ResponseResult? completed = null;
        await foreach (var update in await Client().CreateResponseStreamingAsync(options))
        {
            kinds.Add(update.GetType().Name["StreamingResponse".Length..^"Update".Length]);
            if (update is StreamingResponseOutputTextDeltaUpdate d) deltas.Append(d.Delta);
            if (update is StreamingResponseOutputTextDoneUpdate t) doneText = t.Text;
            if (update is StreamingResponseCompletedUpdate c) completed = c.Response;
            if (update is StreamingResponseIncompleteUpdate i) completed = i.Response;
        }
        Assert.Equal(["Created", "InProgress", "OutputItemAdded", "ContentPartAdded"], kinds.Take(4));
        // A random model rarely closes its strings before the budget forces it: then the JSON ends exactly at the budget and the
        // response is incomplete (max_output_tokens), as OpenAI reports a reply cut by the limit; either way the JSON is whole.
        var last = completed!.Status == ResponseStatus.Completed ? "Completed" : "Incomplete";
        Assert.Equal(["OutputTextDone", "ContentPartDone", "OutputItemDone", last], kinds.TakeLast(4));
        if (last == "Incomplete") Assert.Equal((ResponseStatus.Incomplete, 60), (completed.Status!.Value, completed.Usage.OutputTokenCount));
        Assert.All(kinds.Skip(4).SkipLast(4), k => Assert.Equal("OutputTextDelta", k));
        Assert.Equal(deltas.ToString(), doneText);
        Assert.Equal(doneText, completed.GetOutputText());
        using var document = JsonDocument.Parse(doneText!);
        Assert.True(JsonSchema.FromText(schemaText).Evaluate(document.RootElement).IsValid, doneText);
        Assert.Equal(PromptTokens([new ChatMessage("user", "Describe a person.")], withTool: false), completed.Usage.InputTokenCount);
    }

    [AgentServerFact]
    public async Task StoredResponsesCanBeListedAndDeletedAndBadRequestsNameTheField()
    {
        using var http = fixture.Http();
        async Task<(int Status, JsonNode? Body)> Send(HttpMethod method, string path, string? body = null)
        {
            using var request = new HttpRequestMessage(method, path);
            if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            var response = await http.SendAsync(request);
            return ((int)response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync()));
        }

        var created = await Send(HttpMethod.Post, "/v1/responses", """{"model":"random-qwen-chat","input":"hi","max_output_tokens":16,"temperature":0,"metadata":{"run":"7"},"safety_identifier":"user-42","prompt_cache_key":"support-v1","service_tier":"auto","max_tool_calls":3}""");
        Assert.Equal(200, created.Status);
        var id = (string)created.Body!["id"]!;
        Assert.Equal("7", (string)created.Body["metadata"]!["run"]!);
        // OpenAI echoes the client's labels and names the tier that served the request ("auto" resolves to "default").
        Assert.Equal(("user-42", "support-v1", "default"),
            ((string)created.Body["safety_identifier"]!, (string)created.Body["prompt_cache_key"]!, (string)created.Body["service_tier"]!));
        Assert.Equal(3, (int)created.Body["max_tool_calls"]!);
        var items = await Send(HttpMethod.Get, $"/v1/responses/{id}/input_items");
        var item = Assert.Single(items.Body!["data"]!.AsArray())!;
        Assert.Equal(("message", "user", "hi"), ((string)item["type"]!, (string)item["role"]!, (string)item["content"]![0]!["text"]!));

        // Easy messages are listed as OpenAI lists them (type message, content parts), newest first, in cursor pages.
        var three = await Send(HttpMethod.Post, "/v1/responses", """{"model":"random-qwen-chat","max_output_tokens":16,"input":[{"role":"user","content":"first"},{"role":"assistant","content":"second"},{"type":"message","role":"user","content":[{"type":"input_text","text":"third"}]}]}""");
        var threeId = (string)three.Body!["id"]!;
        string[] Texts(JsonNode page) => page["data"]!.AsArray().Select(i => (string)i!["content"]![0]!["text"]!).ToArray();
        var newest = (await Send(HttpMethod.Get, $"/v1/responses/{threeId}/input_items")).Body!;
        Assert.Equal(["third", "second", "first"], Texts(newest));
        Assert.All(newest["data"]!.AsArray(), i => Assert.Equal("message", (string)i!["type"]!));
        Assert.Equal(("output_text", "input_text"), ((string)newest["data"]![1]!["content"]![0]!["type"]!, (string)newest["data"]![2]!["content"]![0]!["type"]!));
        var firstPage = (await Send(HttpMethod.Get, $"/v1/responses/{threeId}/input_items?order=asc&limit=2")).Body!;
        Assert.Equal(["first", "second"], Texts(firstPage));
        Assert.True((bool)firstPage["has_more"]!);
        var lastPage = (await Send(HttpMethod.Get, $"/v1/responses/{threeId}/input_items?order=asc&limit=2&after={(string)firstPage["last_id"]!}")).Body!;
        Assert.Equal(["third"], Texts(lastPage));
        Assert.False((bool)lastPage["has_more"]!);
        Assert.Equal(400, (await Send(HttpMethod.Get, $"/v1/responses/{threeId}/input_items?limit=0")).Status);
        // OpenAI's delete reply names the deleted object's type, "response" (API reference, "Delete a model response").
        var deleted = await Send(HttpMethod.Delete, $"/v1/responses/{id}");
        Assert.Equal(200, deleted.Status);
        Assert.Equal((id, "response", true), ((string)deleted.Body!["id"]!, (string)deleted.Body["object"]!, (bool)deleted.Body["deleted"]!));
        Assert.Equal(404, (await Send(HttpMethod.Get, $"/v1/responses/{id}")).Status);

        const string model = "\"model\":\"random-qwen-chat\"";
        foreach (var (body, param) in new[]
        {
            ($"{{{model}}}", "input"),
            ($"{{{model},\"input\":\"hi\",\"max_output_tokens\":5}}", "max_output_tokens"),
            ($"{{{model},\"input\":\"hi\",\"tools\":[{{\"type\":\"web_search\"}}]}}", "tools[0].type"),
            ($"{{{model},\"input\":\"hi\",\"tools\":[{{\"type\":\"function\",\"name\":\"f\"}}],\"tool_choice\":{{\"type\":\"function\",\"name\":\"g\"}}}}", "tool_choice"),
            ($"{{{model},\"input\":\"hi\",\"previous_response_id\":\"resp_missing\"}}", "previous_response_id"),
            ($"{{{model},\"input\":[{{\"type\":\"message\",\"role\":\"user\",\"content\":[{{\"type\":\"input_image\",\"image_url\":\"x\"}}]}}]}}", "input[0].content[0].type"),
            ($"{{{model},\"input\":\"hi\",\"text\":{{\"format\":{{\"type\":\"json_schema\",\"name\":\"x\"}}}}}}", "text.format.schema"),
            ($"{{{model},\"input\":\"hi\",\"background\":true,\"store\":false}}", "background"),
            // Server-side state this server does not keep is refused rather than silently answered without.
            ($"{{{model},\"input\":\"hi\",\"conversation\":\"conv_123\"}}", "conversation"),
            ($"{{{model},\"input\":\"hi\",\"prompt\":{{\"id\":\"pmpt_123\"}}}}", "prompt"),
        })
        {
            var (status, error) = await Send(HttpMethod.Post, "/v1/responses", body);
            Assert.True((400, param) == (status, (string?)error?["error"]?["param"]), $"{body}: {status} {error}");
        }
    }

    [AgentServerFact]
    public async Task InputTokensCountsThePromptTheTemplateRendersWithoutGenerating()
    {
        // OpenAI's POST /v1/responses/input_tokens (openai-node src/resources/responses/input-tokens.ts): the body of a
        // Responses request in, {"object": "response.input_tokens", "input_tokens": N} out.
        using var http = fixture.Http();
        var body = """{"model":"random-qwen-chat","instructions":"Be brief.","input":"Weather in Paris?","tools":[{"type":"function","name":"get_weather","description":"Current weather in a city","parameters":""" +
            WeatherParameters + "}]}";
        using var response = await http.PostAsync("/v1/responses/input_tokens", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        var count = JsonNode.Parse(text)!;
        Assert.Equal("response.input_tokens", (string)count["object"]!);
        Assert.Equal(PromptTokens([new ChatMessage("system", "Be brief."), new ChatMessage("user", "Weather in Paris?")]), (int)count["input_tokens"]!);

        using var unknown = await http.PostAsync("/v1/responses/input_tokens",
            new StringContent("""{"model":"no-such-model","input":"hi"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, unknown.StatusCode);
    }

    [AgentServerFact]
    public async Task AMessageCutOffByMaxOutputTokensIsIncompleteAndOnlyACompletedResponseHasCompletedAt()
    {
        using var http = fixture.Http();
        async Task<JsonNode> Post(string body)
        {
            using var response = await http.PostAsync("/v1/responses", new StringContent(body, Encoding.UTF8, "application/json"));
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            return JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        }

        // Random weights over a 512-token vocabulary do not end on their own within 16 tokens: max_output_tokens cuts the
        // message, and OpenAI then marks the cut item "incomplete" as well as the response.
        var cut = await Post("""{"model":"random-qwen-chat","input":"hi","max_output_tokens":16,"temperature":0}""");
        Assert.Equal(("incomplete", "max_output_tokens"), ((string)cut["status"]!, (string)cut["incomplete_details"]!["reason"]!));
        var message = Assert.Single(cut["output"]!.AsArray())!;
        Assert.Equal(("message", "incomplete"), ((string)message["type"]!, (string)message["status"]!));
        Assert.Null(cut["completed_at"]);
        Assert.True(cut.AsObject().ContainsKey("completed_at"));

        // Streamed, the item's output_item.done says so too, and the last event is response.incomplete.
        using var streamed = await http.PostAsync("/v1/responses", new StringContent(
            """{"model":"random-qwen-chat","input":"hi","max_output_tokens":16,"temperature":0,"stream":true}""", Encoding.UTF8, "application/json"));
        var events = (await streamed.Content.ReadAsStringAsync()).Split('\n')
            .Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).Select(l => JsonNode.Parse(l["data: ".Length..])!).ToList();
        var itemDone = events.Single(e => (string)e["type"]! == "response.output_item.done");
        Assert.Equal("incomplete", (string)itemDone["item"]!["status"]!);
        Assert.Equal("response.incomplete", (string)events[^1]["type"]!);
        Assert.Equal("incomplete", (string)events[^1]["response"]!["output"]![0]!["status"]!);

        // A forced call finishes before the budget: the response is completed, with completed_at no earlier than created_at.
        var done = await Post("""{"model":"random-qwen-chat","input":"Weather in Rome?","max_output_tokens":200,"tool_choice":"required","tools":[{"type":"function","name":"get_weather","parameters":""" + WeatherParameters + ""","strict":true}]}""");
        Assert.Equal("completed", (string)done["status"]!);
        Assert.Equal("completed", (string)done["output"]![0]!["status"]!);
        Assert.InRange((long)done["completed_at"]!, (long)done["created_at"]!, DateTimeOffset.UtcNow.ToUnixTimeSeconds());
    }

    [AgentServerFact]
    public async Task TruncationAutoDropsTheOldestItemsUntilTheInputFitsAndDisabledRefusesItNamingInput()
    {
        using var http = fixture.Http();
        async Task<(System.Net.HttpStatusCode Status, JsonNode Body)> Post(string input, string? truncation)
        {
            var body = $$"""{"model":"random-qwen-chat","input":{{input}},"max_output_tokens":16,"temperature":0{{(truncation is null ? "" : $",\"truncation\":\"{truncation}\"")}}}""";
            using var response = await http.PostAsync("/v1/responses", new StringContent(body, Encoding.UTF8, "application/json"));
            return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
        }
        // The first message alone is longer than the 2048-token context.
        var story = string.Concat(Enumerable.Repeat("Tom had a big red ball. ", 600));
        var tail = """{"role":"assistant","content":"ok"},{"role":"user","content":"hi"}""";
        var longInput = $$"""[{"role":"user","content":"{{story}}"},{{tail}}]""";

        var (refused, error) = await Post(longInput, null);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, refused);
        Assert.Equal(("input", "context_length_exceeded"), ((string)error["error"]!["param"]!, (string)error["error"]!["code"]!));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, (await Post(longInput, "disabled")).Status);

        // With "auto" the oldest item goes: the model sees exactly what the last two items alone give it.
        var (status, truncated) = await Post(longInput, "auto");
        Assert.Equal(System.Net.HttpStatusCode.OK, status);
        Assert.Equal("auto", (string)truncated["truncation"]!);
        var (_, tailOnly) = await Post($"[{tail}]", null);
        Assert.Equal((int)tailOnly["usage"]!["input_tokens"]!, (int)truncated["usage"]!["input_tokens"]!);
        Assert.Equal("disabled", (string)tailOnly["truncation"]!);
        Assert.Equal("truncation", (string)(await Post(longInput, "sometimes")).Body["error"]!["param"]!);
    }

    [AgentServerFact]
    public async Task ABackgroundResponseIsQueuedPolledToTheSameOutputAndCancellable()
    {
        var client = Client();
        CreateResponseOptions Options(int maxTokens, bool background)
        {
            var options = new CreateResponseOptions("random-qwen-chat", [ResponseItem.CreateUserMessageItem("Tell me a story.")])
            {
                MaxOutputTokenCount = maxTokens,
                Temperature = 0,
                BackgroundModeEnabled = background,
            };
            return options;
        }

        // Answered at once, queued, then generated on: polled to the same output as the request without background.
        var queued = (await client.CreateResponseAsync(Options(24, background: true))).Value;
        Assert.Equal(ResponseStatus.Queued, queued.Status);
        Assert.True(queued.BackgroundModeEnabled);
        Assert.Empty(queued.OutputItems);
        var polled = queued;
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        while (polled.Status is ResponseStatus.Queued or ResponseStatus.InProgress && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
            polled = (await client.GetResponseAsync(queued.Id)).Value;
        }
        Assert.Equal(ResponseStatus.Incomplete, polled.Status);   // 24 tokens of a random-weight model run out of budget
        var direct = (await client.CreateResponseAsync(Options(24, background: false))).Value;
        Assert.Equal(direct.GetOutputText(), polled.GetOutputText());
        Assert.Equal(direct.Usage.OutputTokenCount, polled.Usage.OutputTokenCount);
        Assert.Equal(queued.Id, (await client.CancelResponseAsync(queued.Id)).Value.Id);   // ended already: answered as it is
        Assert.Equal(ResponseStatus.Incomplete, (await client.GetResponseAsync(queued.Id)).Value.Status);

        // A long one cancelled while it runs ends cancelled, and the model is free for the next request.
        var longOne = (await client.CreateResponseAsync(Options(1900, background: true))).Value;
        var cancelled = (await client.CancelResponseAsync(longOne.Id)).Value;
        Assert.Equal(ResponseStatus.Cancelled, cancelled.Status);
        Assert.Equal(ResponseStatus.Cancelled, (await client.GetResponseAsync(longOne.Id)).Value.Status);
        var after = (await client.CreateResponseAsync(Options(16, background: false))).Value;
        Assert.Equal(ResponseStatus.Incomplete, after.Status);

        // A response created without background cannot be cancelled.
        using var http = fixture.Http();
        var refused = await http.PostAsync($"/v1/responses/{direct.Id}/cancel", null);
        Assert.Equal(400, (int)refused.StatusCode);
    }
}
