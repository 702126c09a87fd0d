#pragma warning disable OPENAI001
using System.ClientModel;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using OpenAI;
using OpenAI.Chat;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Server;
using SharpTune.Tests.Support;
using HfTokenizer = SharpTune.Tokenization.HfTokenizer;
using ChatTool = OpenAI.Chat.ChatTool;
using ChatMessage = OpenAI.Chat.ChatMessage;
using TorchSharp;
using static TorchSharp.torch;

namespace SharpTune.Tests.Server;

/// <summary>
/// A server over a random-weight tiny Llama with stories260K's tokenizer and Qwen3's chat template (which renders tools,
/// tool calls and tool results): whatever it writes, constrained decoding must turn into valid calls and JSON.
/// </summary>
public sealed class AgentServerFixture : IAsyncLifetime
{
    private readonly TempDir temp = new();

    public RunningServer Server { get; private set; } = null!;
    public string ModelDir => Path.Combine(temp.Path, "random-qwen-chat");

    /// <summary>
    /// The server's engine gate (see <see cref="ServerOptions.EngineGate"/>): null lets the engine run freely; a test sets
    /// it to hold decoding at an exact point, and clears it in a finally.
    /// </summary>
    public Func<EngineGateState, bool>? Gate { get; set; }

    public async Task InitializeAsync()
    {
        if (!Available) return;
        CreateRandomQwenChatModel(ModelDir);
        Server = await SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = ModelDir, Port = 0, ApiKeys = [ServerFixture.Key], MaxBatchSize = 32, BatchWindow = TimeSpan.FromMilliseconds(50),
            EngineGate = state => Gate?.Invoke(state) ?? true,
        });
    }

    /// <summary>Writes the random-weight tiny Llama (seed 99) with stories260K's tokenizer and Qwen3's chat template to <paramref name="dir"/>.</summary>
    public static void CreateRandomQwenChatModel(string dir)
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var config = TestModels.LlamaConfigJson(vocab: tokenizer.VocabSize);
        config["max_position_embeddings"] = 2048;
        torch.manual_seed(99);
        using (var model = ModelFactory.Create(ModelConfig.FromJson(config)))
            PretrainedModel.Save(model, dir);
        File.Copy(Path.Combine(TestAssets.Stories260K, "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
        var tokenizerConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.Stories260K, "tokenizer_config.json")))!.AsObject();
        tokenizerConfig["chat_template"] = JsonNode.Parse(File.ReadAllText(Path.Combine(TestAssets.SharedDir, "tokenizers", "qwen3", "tokenizer_config.json")))!["chat_template"]!.DeepClone();
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), tokenizerConfig.ToJsonString());
    }

    public static bool Available => Directory.Exists(TestAssets.Stories260K) && Directory.Exists(Path.Combine(TestAssets.SharedDir, "tokenizers", "qwen3"));

    /// <summary>A raw HTTP client for the server, with the API key set.</summary>
    public HttpClient Http()
    {
        var http = new HttpClient { BaseAddress = Server.Url };
        http.DefaultRequestHeaders.Authorization = new("Bearer", ServerFixture.Key);
        return http;
    }

    public ChatClient Chat() => new("random-qwen-chat", new ApiKeyCredential(ServerFixture.Key), new OpenAIClientOptions { Endpoint = Server.OpenAiEndpoint });

    public async Task DisposeAsync()
    {
        if (Server is not null) await Server.DisposeAsync();
        temp.Dispose();
    }
}

public sealed class AgentServingTests(AgentServerFixture fixture) : IClassFixture<AgentServerFixture>
{
    private static readonly ChatTool Weather = ChatTool.CreateFunctionTool("get_weather", "Current weather in a city",
        BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}"""));

    private static readonly ChatTool Time = ChatTool.CreateFunctionTool("get_time", "Local time in a city",
        BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"""));

    private const string PersonSchema = """
        {"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"pets":{"type":"array","items":{"enum":["cat","dog"]},"maxItems":3},
         "home":{"anyOf":[{"type":"null"},{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}]}},
         "required":["name","age","pets","home"],"additionalProperties":false}
        """;

    [AgentServerFact]
    public async Task RequiredToolCallThenToolResultThenAnswer()
    {
        var options = new ChatCompletionOptions { Tools = { Weather, Time }, ToolChoice = ChatToolChoice.CreateRequiredChoice(), MaxOutputTokenCount = 200, Temperature = 1, Seed = 5 };
        List<ChatMessage> messages = [new UserChatMessage("What is the weather in Paris?")];
        var first = (await fixture.Chat().CompleteChatAsync(messages, options)).Value;

        Assert.Equal(ChatFinishReason.ToolCalls, first.FinishReason);
        var call = Assert.Single(first.ToolCalls);
        Assert.StartsWith("call_", call.Id);
        Assert.Contains(call.FunctionName, new[] { "get_weather", "get_time" });
        using var arguments = JsonDocument.Parse(call.FunctionArguments.ToString());
        Assert.Equal(JsonValueKind.String, arguments.RootElement.GetProperty("city").ValueKind);

        messages.Add(new AssistantChatMessage(first));
        messages.Add(new ToolChatMessage(call.Id, """{"temperature": 18, "sky": "clear"}"""));
        var answer = (await fixture.Chat().CompleteChatAsync(messages,
            new ChatCompletionOptions { Tools = { Weather, Time }, ToolChoice = ChatToolChoice.CreateNoneChoice(), MaxOutputTokenCount = 12, Temperature = 0 })).Value;
        Assert.Empty(answer.ToolCalls);
        Assert.NotEqual(ChatFinishReason.ToolCalls, answer.FinishReason);
        Assert.NotNull(answer.Content);
    }

    [AgentServerFact]
    public async Task ARequiredCallThatMaxTokensCutsIsReturnedAsTheCallSoFarWithFinishLength()
    {
        // 56 tokens end the forced call inside its arguments (the random model pads with JSON whitespace). OpenAI returns
        // a call cut by max_tokens as a tool call whose arguments are the JSON written so far, with finish_reason
        // "length"; before, the reply was the call's raw markup as text.
        var options = new ChatCompletionOptions { Tools = { Time }, ToolChoice = ChatToolChoice.CreateRequiredChoice(), MaxOutputTokenCount = 56, Temperature = 0 };
        var reply = (await fixture.Chat().CompleteChatAsync([new UserChatMessage("Time in Oslo?")], options)).Value;
        Assert.Equal(ChatFinishReason.Length, reply.FinishReason);
        Assert.Equal(56, reply.Usage.OutputTokenCount);
        Assert.True(reply.Content.Count == 0, string.Concat(reply.Content.Select(c => c.Text)));
        var call = Assert.Single(reply.ToolCalls);
        Assert.Equal("get_time", call.FunctionName);
        var arguments = call.FunctionArguments.ToString();
        Assert.StartsWith("{", arguments);
        Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse(arguments));   // unterminated: the budget ended inside it

        // Streamed, the same call arrives in the last chunks before finish_reason "length".
        var streamedArguments = new StringBuilder();
        string? streamedName = null;
        ChatFinishReason? streamedFinish = null;
        await foreach (var update in fixture.Chat().CompleteChatStreamingAsync([new UserChatMessage("Time in Oslo?")], options))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                streamedName ??= part.FunctionName;
                streamedArguments.Append(part.FunctionArgumentsUpdate?.ToString());
            }
            streamedFinish ??= update.FinishReason;
        }
        Assert.Equal(("get_time", arguments, ChatFinishReason.Length), (streamedName, streamedArguments.ToString(), streamedFinish));
    }

    [AgentServerFact]
    public async Task NamedToolChoiceStreamsTheCallAsOpenAiDoes()
    {
        var options = new ChatCompletionOptions { Tools = { Weather, Time }, ToolChoice = ChatToolChoice.CreateFunctionChoice("get_time"), MaxOutputTokenCount = 160, Temperature = 1, Seed = 11 };
        string? id = null, name = null;
        var args = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in fixture.Chat().CompleteChatStreamingAsync([new UserChatMessage("Time in Oslo?")], options))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                Assert.Equal(0, part.Index);
                id ??= part.ToolCallId;
                name ??= part.FunctionName;
                if (part.FunctionArgumentsUpdate is { } a && !a.ToMemory().IsEmpty) args.Append(a.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.StartsWith("call_", id);
        Assert.Equal("get_time", name);
        using var parsed = JsonDocument.Parse(args.ToString());
        Assert.True(parsed.RootElement.TryGetProperty("city", out _));
        // A call forced by name ends "stop", not "tool_calls": OpenAI reports it so, and vLLM matches it
        // (vllm-project/vllm#49496); "required" and "auto" calls end "tool_calls".
        Assert.Equal(ChatFinishReason.Stop, finish);
        var whole = (await fixture.Chat().CompleteChatAsync([new UserChatMessage("Time in Oslo?")], options)).Value;
        Assert.Equal(ChatFinishReason.Stop, whole.FinishReason);
        Assert.Equal(args.ToString(), Assert.Single(whole.ToolCalls).FunctionArguments.ToString());
    }

    [AgentServerFact]
    public async Task LegacyFunctionsAreAnsweredWithFunctionCallAsOpenAiAnswersThem()
    {
        using var http = fixture.Http();
        const string request = """
            {"model":"random-qwen-chat","max_tokens":160,"temperature":1,"seed":5,
             "messages":[{"role":"user","content":"Time in Oslo?"}],
             "functions":[{"name":"get_time","description":"Local time","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}],
             "function_call":{"name":"get_time"}STREAM}
            """;
        var whole = JsonNode.Parse(await (await http.PostAsync("/v1/chat/completions",
            new StringContent(request.Replace("STREAM", ""), System.Text.Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync())!["choices"]![0]!;
        Assert.Equal("function_call", (string)whole["finish_reason"]!);
        Assert.Null(whole["message"]!["tool_calls"]);
        Assert.Null(whole["message"]!["content"]);
        Assert.Equal("get_time", (string)whole["message"]!["function_call"]!["name"]!);
        using (var arguments = JsonDocument.Parse((string)whole["message"]!["function_call"]!["arguments"]!))
            Assert.True(arguments.RootElement.TryGetProperty("city", out _));

        // Streamed: the name in the first function_call delta, then the arguments, then finish_reason "function_call".
        var stream = await (await http.PostAsync("/v1/chat/completions",
            new StringContent(request.Replace("STREAM", ",\"stream\":true"), System.Text.Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync();
        var chunks = stream.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).Where(d => d != "[DONE]")
            .Select(d => JsonNode.Parse(d)!["choices"]![0]!).ToList();
        var calls = chunks.Select(c => c["delta"]!["function_call"]).OfType<JsonNode>().ToList();
        Assert.Equal("get_time", (string)calls[0]["name"]!);
        Assert.Equal((string)whole["message"]!["function_call"]!["arguments"]!, string.Concat(calls.Select(c => (string?)c["arguments"] ?? "")));
        Assert.DoesNotContain(chunks, c => c["delta"]!["tool_calls"] is not null);
        Assert.Equal("function_call", (string)chunks[^1]["finish_reason"]!);
    }

    [AgentServerFact]
    public async Task StrictJsonSchemaValidatesOnAHundredSeeds()
    {
        var schema = JsonSchema.FromText(PersonSchema);
        var options = Enumerable.Range(0, 100).Select(seed => new ChatCompletionOptions
        {
            ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("person", BinaryData.FromString(PersonSchema), jsonSchemaIsStrict: true),
            Temperature = 1, Seed = seed, MaxOutputTokenCount = 60 + seed % 30,
        }).ToArray();
        var replies = await Task.WhenAll(options.Select(o => fixture.Chat().CompleteChatAsync([new UserChatMessage("Describe a person.")], o)));
        for (var seed = 0; seed < replies.Length; seed++)
        {
            var text = replies[seed].Value.Content[0].Text;
            JsonDocument document;
            try { document = JsonDocument.Parse(text); }
            catch (JsonException e) { throw new Xunit.Sdk.XunitException($"seed {seed}: not JSON ({e.Message}): {text}"); }
            using (document) Assert.True(schema.Evaluate(document.RootElement).IsValid, $"seed {seed}: {text}");
            // Whole outputs end with "stop", even those completed on their last allowed token: a "length" reply is one
            // OpenAI's SDKs refuse to parse (LengthFinishReasonError).
            Assert.Equal(ChatFinishReason.Stop, replies[seed].Value.FinishReason);
        }
        Assert.True(replies.Select(r => r.Value.Content[0].Text).Distinct().Count() > 90);   // the seeds gave different outputs
    }

    [AgentServerFact]
    public async Task LogprobsAreTheForwardPassLogSoftmax()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 };
        var reply = (await fixture.Chat().CompleteChatAsync([new UserChatMessage("Hello there")], options)).Value;
        var served = reply.ContentTokenLogProbabilities;
        Assert.NotEmpty(served);

        var (tokenizer, prompt, generated, logp) = GreedyReference.Compute(fixture.ModelDir, "Hello there", served.Count);
        for (var i = 0; i < served.Count; i++)
        {
            var row = logp[prompt.Count - 1 + i];
            var expected = row[generated[i]].item<float>();
            Assert.Equal(tokenizer.TokenBytes(generated[i]), (served[i].Utf8Bytes ?? default).ToArray());
            Assert.Equal(expected, served[i].LogProbability, 3);
            Assert.Equal(3, served[i].TopLogProbabilities.Count);
            Assert.Equal(row.max().item<float>(), served[i].TopLogProbabilities[0].LogProbability, 3);
        }
    }

    [AgentServerFact]
    public async Task PenaltiesAndLogitBiasSteerGreedyDecodingAsVllmAppliesThem()
    {
        // vLLM's order on each step's raw logits: + logit_bias, − frequency·count, − presence·[count > 0] over the tokens
        // generated so far (the prompt is not penalised), then the argmax; logprobs stay the raw log-softmax.
        const int Steps = 10, Biased = 100;
        const double Presence = 1.5, Frequency = 0.5, Bias = 2;
        var options = new ChatCompletionOptions
        {
            Temperature = 0, MaxOutputTokenCount = Steps, IncludeLogProbabilities = true, PresencePenalty = (float)Presence,
            FrequencyPenalty = (float)Frequency,
        };
        options.LogitBiases.Add(Biased, (int)Bias);
        var served = (await fixture.Chat().CompleteChatAsync([new UserChatMessage("Hello there")], options)).Value.ContentTokenLogProbabilities;

        using var model = PretrainedModel.Load(fixture.ModelDir);
        var tokenizer = HfTokenizer.FromDirectory(fixture.ModelDir);
        var ids = ChatPromptFormat.ForModel(tokenizer, null).Encode([new SharpTune.Tokenization.ChatMessage("user", "Hello there")], tokenizer).ToList();
        var promptLength = ids.Count;
        var counts = new Dictionary<int, int>();
        var expected = new List<(int Id, float Logprob)>();
        using (var noGrad = no_grad())
            for (var step = 0; step < Steps; step++)
            {
                using var scope = NewDisposeScope();
                var input = tensor(ids.Select(i => (long)i).ToArray()).view(1, -1);
                var raw = model.ComputeLogits(model.DecodeHidden(model.EmbedTokens(input), new ForwardContext { PositionIds = arange(ids.Count).view(1, -1) }))[0, -1];
                var steered = raw.to(ScalarType.Float32).data<float>().ToArray();
                steered[Biased] += (float)Bias;
                foreach (var (token, count) in counts)
                {
                    steered[token] -= (float)Frequency * count;
                    steered[token] -= (float)Presence;
                }
                var next = Array.IndexOf(steered, steered.Max());
                if (model.Config.EosTokenIds.Contains(next)) break;
                expected.Add((next, raw.log_softmax(-1)[next].item<float>()));
                counts[next] = counts.GetValueOrDefault(next) + 1;
                ids.Add(next);
            }
        var plain = GreedyReference.Compute(fixture.ModelDir, "Hello there", Steps).Generated;
        Assert.NotEqual(plain.Take(expected.Count), expected.Select(e => e.Id));   // the penalties changed what greedy writes
        Assert.Equal(expected.Count, served.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.Equal(tokenizer.TokenBytes(expected[i].Id), (served[i].Utf8Bytes ?? default).ToArray());
            Assert.Equal(expected[i].Logprob, served[i].LogProbability, 3);
        }
    }

    [AgentServerFact]
    public async Task RepetitionPenaltyCoversThePromptAsTheLibrarysDoes()
    {
        // vLLM's repetition_penalty extension scales the logits of prompt and output tokens, as transformers' processor
        // (the library's) does: greedy, the served reply is the library's token for token. 0.3 (below 1 favours tokens
        // already seen) changes this model's reply; 1.5 happens not to.
        using var http = fixture.Http();
        var body = """{"model":"random-qwen-chat","messages":[{"role":"user","content":"Hello there"}],"temperature":0,"max_tokens":10,"logprobs":true,"repetition_penalty":0.3}""";
        var reply = JsonNode.Parse(await (await http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync())!;
        var served = reply["choices"]![0]!["logprobs"]!["content"]!.AsArray().Select(t => t!["bytes"]!.AsArray().Select(b => (byte)b!.GetValue<int>()).ToArray()).ToArray();

        using var model = PretrainedModel.Load(fixture.ModelDir);
        var tokenizer = HfTokenizer.FromDirectory(fixture.ModelDir);
        var prompt = ChatPromptFormat.ForModel(tokenizer, null).Encode([new SharpTune.Tokenization.ChatMessage("user", "Hello there")], tokenizer);
        var penalised = TokenGenerator.Generate(model, [prompt], new GenerationOptions { Temperature = 0, MaxNewTokens = 10, RepetitionPenalty = 0.3 })[0].Tokens
            .Where(t => !model.Config.EosTokenIds.Contains(t)).ToArray();
        var plain = GreedyReference.Compute(fixture.ModelDir, "Hello there", 10).Generated;
        Assert.NotEqual(plain.Take(penalised.Length), penalised);   // the penalty changed what greedy writes
        Assert.Equal(penalised.Select(t => tokenizer.TokenBytes(t)), served);
    }

    [AgentServerFact]
    public async Task ValidationAnswersLikeOpenAi()
    {
        using var http = fixture.Http();
        async Task<(int Status, string? Param, HttpResponseMessage Response)> Post(string body, string path = "/v1/chat/completions")
        {
            var response = await http.PostAsync(path, new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
            var json = JsonNode.Parse(await response.Content.ReadAsStringAsync());
            return ((int)response.StatusCode, json?["error"]?["param"]?.GetValue<string>(), response);
        }
        const string messages = "\"model\":\"random-qwen-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2";
        Assert.Equal((400, "presence_penalty"), Trim(await Post($"{{{messages},\"presence_penalty\":2.5}}")));
        Assert.Equal((400, "frequency_penalty"), Trim(await Post($"{{{messages},\"frequency_penalty\":-3}}")));
        Assert.Equal((400, "logit_bias"), Trim(await Post($"{{{messages},\"logit_bias\":{{\"100000\":5}}}}")));   // outside the vocabulary
        Assert.Equal((400, "logit_bias"), Trim(await Post($"{{{messages},\"logit_bias\":{{\"7\":101}}}}")));
        Assert.Equal((400, "top_logprobs"), Trim(await Post($"{{{messages},\"logprobs\":true,\"top_logprobs\":21}}")));
        Assert.Equal((400, "stream_options"), Trim(await Post($"{{{messages},\"stream_options\":{{\"include_usage\":true}}}}")));
        Assert.Equal((400, "response_format.json_schema.schema"), Trim(await Post($"{{{messages},\"response_format\":{{\"type\":\"json_schema\",\"json_schema\":{{\"name\":\"x\",\"strict\":true,\"schema\":{{\"type\":\"object\",\"properties\":{{\"a\":{{\"type\":\"string\",\"pattern\":\"(?=a)a\"}}}},\"required\":[\"a\"],\"additionalProperties\":false}}}}}}}}")));
        // A text model refuses an image part instead of dropping it, and a tool result must answer an earlier call, as OpenAI has it.
        Assert.Equal((400, "messages[0].content[1].type"), Trim(await Post("{\"model\":\"random-qwen-chat\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"what is this?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,AAAA\"}}]}]}")));
        Assert.Equal((400, "messages[1].tool_call_id"), Trim(await Post("{\"model\":\"random-qwen-chat\",\"max_tokens\":2,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"tool\",\"tool_call_id\":\"call_none\",\"content\":\"42\"}]}")));
        // Audio output and web search, which a text model cannot give, are refused as OpenAI refuses them for a model without them.
        Assert.Equal((400, "modalities"), Trim(await Post($"{{{messages},\"modalities\":[\"text\",\"audio\"]}}")));
        Assert.Equal((400, "audio"), Trim(await Post($"{{{messages},\"audio\":{{\"voice\":\"alloy\",\"format\":\"mp3\"}}}}")));
        Assert.Equal((400, "web_search_options"), Trim(await Post($"{{{messages},\"web_search_options\":{{}}}}")));
        Assert.Equal(200, (await Post($"{{{messages},\"modalities\":[\"text\"]}}")).Status);
        // Legacy completions: options not carried out are refused, not ignored.
        const string prompt = "\"model\":\"random-qwen-chat\",\"prompt\":\"Once\",\"max_tokens\":2";
        Assert.Equal((400, "suffix"), Trim(await Post($"{{{prompt},\"suffix\":\" end\"}}", "/v1/completions")));
        Assert.Equal((400, "best_of"), Trim(await Post($"{{{prompt},\"n\":3,\"best_of\":2}}", "/v1/completions")));
        Assert.Equal((400, "best_of"), Trim(await Post($"{{{prompt},\"best_of\":2}}", "/v1/completions")));
        Assert.Equal(200, (await Post($"{{{prompt},\"n\":2,\"best_of\":2,\"suffix\":\"\"}}", "/v1/completions")).Status);
        var ok = await Post($"{{{messages}}}");
        Assert.Equal(200, ok.Status);
        var fingerprint = JsonNode.Parse(await ok.Response.Content.ReadAsStringAsync())!["system_fingerprint"]!.GetValue<string>();
        Assert.Matches("^fp_[0-9a-f]{10}$", fingerprint);
        Assert.Equal(fingerprint, JsonNode.Parse(await (await Post($"{{{messages}}}")).Response.Content.ReadAsStringAsync())!["system_fingerprint"]!.GetValue<string>());
        Assert.StartsWith("req_", ok.Response.Headers.GetValues("x-request-id").Single());
        var bad = await Post("{}");
        Assert.True(bad.Response.Headers.Contains("x-request-id"));

        static (int, string?) Trim((int Status, string? Param, HttpResponseMessage _) r) => (r.Status, r.Param);
    }
}

/// <summary>Skips visibly when stories260K or the Qwen3 tokenizer files are absent.</summary>
public sealed class AgentServerFactAttribute : FactAttribute
{
    public AgentServerFactAttribute()
    {
        if (!AgentServerFixture.Available) Skip = "shared assets absent: stories260K and tokenizers/qwen3";
    }
}
