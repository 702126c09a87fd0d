using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Server;

/// <summary>The wire format checked with a plain HttpClient: SSE framing, OpenAI shapes, limits and error bodies.</summary>
public sealed class HttpProtocolTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static StringContent Json(JsonNode body) => new(body.ToJsonString(), Encoding.UTF8, "application/json");

    private static async Task<JsonObject> ErrorOf(HttpResponseMessage response) =>
        (JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"] as JsonObject)!;

    [ServerFact]
    public async Task RawChatStreamIsServerSentEventsWithRoleFirstFinishLastUsageAndDone()
    {
        using var http = fixture.Http();
        var body = new JsonObject
        {
            ["model"] = ServerFixture.BaseName,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Lily went to the park." }),
            ["max_tokens"] = 12, ["temperature"] = 0, ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
        };
        using var response = await http.PostAsync("/v1/chat/completions", Json(body));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var raw = await response.Content.ReadAsStringAsync();
        var events = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        Assert.EndsWith("data: [DONE]\n\n", raw, StringComparison.Ordinal);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!.AsObject()).ToList();

        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string)c["object"]!));
        Assert.Single(chunks.Select(c => (string)c["id"]!).Distinct());
        Assert.StartsWith("chatcmpl-", (string)chunks[0]["id"]!);
        Assert.Equal("assistant", (string)chunks[0]["choices"]![0]!["delta"]!["role"]!);
        var withChoices = chunks.Where(c => c["choices"]!.AsArray().Count > 0).ToList();
        Assert.All(withChoices[..^1], c => Assert.Null(c["choices"]![0]!["finish_reason"]));
        Assert.Contains((string)withChoices[^1]["choices"]![0]!["finish_reason"]!, new[] { "stop", "length" });
        var usage = chunks[^1];
        Assert.Empty(usage["choices"]!.AsArray());
        var text = string.Concat(withChoices.Select(c => (string?)c["choices"]![0]!["delta"]!["content"] ?? ""));

        var whole = JsonNode.Parse(await (await http.PostAsync("/v1/chat/completions", Json(WithoutStream(body)))).Content.ReadAsStringAsync())!;
        Assert.Equal((string)whole["choices"]![0]!["message"]!["content"]!, text);
        // The same counts; how many prompt tokens the prefix cache held differs (the second call reuses the first's prompt).
        foreach (var field in new[] { "prompt_tokens", "completion_tokens", "total_tokens" })
            Assert.Equal((int)whole["usage"]![field]!, (int)usage["usage"]![field]!);
        Assert.Equal(["prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details"],
            usage["usage"]!.AsObject().Select(p => p.Key));
    }

    private static JsonObject WithoutStream(JsonObject body)
    {
        var copy = body.DeepClone().AsObject();
        copy.Remove("stream");
        copy.Remove("stream_options");
        return copy;
    }

    [ServerFact]
    public async Task TextCompletionsTakeAPromptArrayAndNAndCountUsageOverAllChoices()
    {
        using var http = fixture.Http();
        var body = new JsonObject
        {
            ["model"] = ServerFixture.BaseName, ["prompt"] = new JsonArray("Once upon a time", "The cat"),
            ["max_tokens"] = 8, ["temperature"] = 0.8, ["seed"] = 7, ["n"] = 2,
        };
        using var response = await http.PostAsync("/v1/completions", Json(body));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal("text_completion", (string)json["object"]!);
        Assert.StartsWith("cmpl-", (string)json["id"]!);
        var choices = json["choices"]!.AsArray();
        Assert.Equal([0, 1, 2, 3], choices.Select(c => (int)c!["index"]!));
        // Usage sums over every choice: each prompt counted once (as OpenAI and vLLM count it), every choice's tokens.
        var usage = json["usage"]!;
        var tokenizer = HfTokenizer.FromDirectory(fixture.ModelDir);
        var promptTokens = tokenizer.Encode("Once upon a time", addSpecialTokens: true).Count + tokenizer.Encode("The cat", addSpecialTokens: true).Count;
        Assert.Equal(promptTokens, (int)usage["prompt_tokens"]!);
        Assert.All(choices, c => Assert.Equal("length", (string)c!["finish_reason"]!));   // seeded: no choice meets EOS within 8 tokens
        Assert.Equal(4 * 8, (int)usage["completion_tokens"]!);
        Assert.Equal(promptTokens + 4 * 8, (int)usage["total_tokens"]!);

        // A seed makes sampling repeatable, whatever else shares the batch.
        var again = JsonNode.Parse(await (await http.PostAsync("/v1/completions", Json(body))).Content.ReadAsStringAsync())!;
        Assert.Equal(choices.Select(c => (string)c!["text"]!), again["choices"]!.AsArray().Select(c => (string)c!["text"]!));
    }

    [ServerFact]
    public async Task TextCompletionsTakeTokenIdPromptsAndDefaultToSixteenTokensAsOpenAi()
    {
        using var http = fixture.Http();
        var tokenizer = HfTokenizer.FromDirectory(fixture.ModelDir);
        var ids = tokenizer.Encode("Once upon a time", addSpecialTokens: true);
        async Task<JsonNode> Complete(JsonNode prompt, bool echo = false) => JsonNode.Parse(await (await http.PostAsync("/v1/completions",
            Json(new JsonObject { ["model"] = ServerFixture.BaseName, ["prompt"] = prompt, ["temperature"] = 0, ["echo"] = echo }))).Content.ReadAsStringAsync())!;

        var asText = await Complete("Once upon a time");
        var asIds = await Complete(new JsonArray(ids.Select(id => (JsonNode)id).ToArray()));
        Assert.Equal((string)asText["choices"]![0]!["text"]!, (string)asIds["choices"]![0]!["text"]!);
        Assert.Equal(ids.Count, (int)asIds["usage"]!["prompt_tokens"]!);
        // No max_tokens: OpenAI's 16 for text completions (the seeded greedy text meets no EOS that soon).
        Assert.Equal(16, (int)asText["usage"]!["completion_tokens"]!);
        Assert.Equal("length", (string)asText["choices"]![0]!["finish_reason"]!);

        var two = await Complete(new JsonArray(new JsonArray(ids.Select(id => (JsonNode)id).ToArray()), new JsonArray(1, 450)));
        Assert.Equal(2, two["choices"]!.AsArray().Count);
        var echoed = await Complete(new JsonArray(ids.Select(id => (JsonNode)id).ToArray()), echo: true);
        Assert.StartsWith(tokenizer.Decode(ids), (string)echoed["choices"]![0]!["text"]!);

        var outside = await http.PostAsync("/v1/completions", Json(new JsonObject { ["model"] = ServerFixture.BaseName, ["prompt"] = new JsonArray(1, 999_999) }));
        Assert.Equal(HttpStatusCode.BadRequest, outside.StatusCode);
        Assert.Equal("prompt", (string)(await ErrorOf(outside))["param"]!);
    }

    [ServerFact]
    public async Task TextCompletionContinuesThePromptKeepingTheLeadingSpaceOfItsFirstWord()
    {
        // stories260K's SentencePiece tokenizer writes " upon" as "▁upon", whose space a decode of the new ids alone
        // drops. vLLM (its detokenizer starts from the prompt's last ids) and OpenAI return the continuation of the
        // prompt: prompt + text is the whole text, and the text is its tokens joined.
        using var http = fixture.Http();
        var tokenizer = HfTokenizer.FromDirectory(fixture.ModelDir);
        var body = new JsonObject { ["model"] = ServerFixture.BaseName, ["prompt"] = "Once", ["max_tokens"] = 3, ["temperature"] = 0, ["logprobs"] = 0 };
        var choice = JsonNode.Parse(await (await http.PostAsync("/v1/completions", Json(body))).Content.ReadAsStringAsync())!["choices"]![0]!;
        var text = (string)choice["text"]!;
        var tokens = choice["logprobs"]!["tokens"]!.AsArray().Select(t => (string)t!).ToArray();
        Assert.StartsWith(" ", text);
        Assert.Equal(string.Concat(tokens), text);
        var whole = tokenizer.Encode("Once" + text, addSpecialTokens: true);
        Assert.Equal("Once" + text, tokenizer.Decode(whole, skipSpecialTokens: true));

        body["echo"] = true;
        var echoed = (string)JsonNode.Parse(await (await http.PostAsync("/v1/completions", Json(body))).Content.ReadAsStringAsync())!["choices"]![0]!["text"]!;
        Assert.Equal("Once" + text, echoed);
    }

    [ServerFact]
    public async Task StreamedEchoCarriesThePromptLogprobsAndTextOffsetsRunOnAcrossChunks()
    {
        using var http = fixture.Http();
        var body = new JsonObject
        {
            ["model"] = ServerFixture.BaseName, ["prompt"] = "Once upon a time", ["max_tokens"] = 4, ["temperature"] = 0,
            ["logprobs"] = 1, ["echo"] = true,
        };
        var whole = JsonNode.Parse(await (await http.PostAsync("/v1/completions", Json(body))).Content.ReadAsStringAsync())!["choices"]![0]!;
        body["stream"] = true;
        var raw = await (await http.PostAsync("/v1/completions", Json(body))).Content.ReadAsStringAsync();
        var choices = raw.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).Where(d => d != "[DONE]")
            .Select(d => JsonNode.Parse(d)!["choices"]!.AsArray()).Where(c => c.Count > 0).Select(c => c[0]!).ToList();

        Assert.Equal((string)whole["text"]!, string.Concat(choices.Select(c => (string)c["text"]!)));
        // As the whole answer (and vLLM's stream): the prompt's tokens first, the first one without a log-probability.
        var streamedTokens = choices.SelectMany(c => c["logprobs"]?["tokens"]?.AsArray().Select(t => (string)t!) ?? []).ToArray();
        Assert.Equal(whole["logprobs"]!["tokens"]!.AsArray().Select(t => (string)t!), streamedTokens);
        Assert.Null(choices[0]["logprobs"]!["token_logprobs"]![0]);
        // Each chunk's first text_offset is where its text starts in what was streamed so far (vLLM's previous_text_lens).
        var streamed = 0;
        foreach (var chunk in choices)
        {
            if (chunk["logprobs"]?["text_offset"] is JsonArray { Count: > 0 } offsets) Assert.Equal(streamed, (int)offsets[0]!);
            streamed += ((string)chunk["text"]!).Length;
        }
    }

    [ServerTheory]
    [InlineData(0)]
    [InlineData(1)]
    public async Task TextCompletionTopLogprobsHoldTheSampledTokenBesideTheAlternatives(int alternatives)
    {
        // OpenAI: "the API will always return the logprob of the sampled token, so there may be up to logprobs+1
        // elements"; vLLM returns that too ("logprobs": 0 gives the sampled token's alone). Sampled at temperature 2,
        // most tokens are not the model's top-1 choice, so a list of the alternatives alone would miss them.
        using var http = fixture.Http();
        var body = new JsonObject
        {
            ["model"] = ServerFixture.BaseName, ["prompt"] = "Once", ["max_tokens"] = 12, ["temperature"] = 2, ["seed"] = 3,
            ["logprobs"] = alternatives,
        };
        var lp = JsonNode.Parse(await (await http.PostAsync("/v1/completions", Json(body))).Content.ReadAsStringAsync())!["choices"]![0]!["logprobs"]!;
        var tokens = lp["tokens"]!.AsArray().Select(t => (string)t!).ToArray();
        var logprobs = lp["token_logprobs"]!.AsArray().Select(v => (double)v!).ToArray();
        var tops = lp["top_logprobs"]!.AsArray().Select(t => t!.AsObject()).ToArray();
        Assert.Equal(12, tops.Length);
        for (var i = 0; i < tokens.Length; i++)
        {
            Assert.Equal(logprobs[i], (double)tops[i][tokens[i]]!, 6);
            Assert.InRange(tops[i].Count, 1, alternatives + 1);
        }
        if (alternatives > 0) Assert.Contains(tops, t => t.Count == alternatives + 1);   // some sampled token is not the top choice
    }

    [ServerFact]
    public async Task ARepeatedKeyIsA400NamingItNotAServerError()
    {
        using var http = fixture.Http();
        using var response = await http.PostAsync("/v1/chat/completions", new StringContent(
            $$"""{"model":"{{ServerFixture.BaseName}}","max_tokens":2,"messages":[{"role":"user","content":"Hi","content":"Hello"}],"max_tokens":3}""",
            Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorOf(response);
        Assert.Equal("invalid_request_error", (string)error["type"]!);
        Assert.Equal("messages[0].content", (string)error["param"]!);
    }

    [ServerFact]
    public async Task StopStringEndsTheTextBeforeIt()
    {
        using var http = fixture.Http();
        var body = new JsonObject { ["model"] = ServerFixture.BaseName, ["prompt"] = "Once upon a time", ["max_tokens"] = 40, ["temperature"] = 0 };
        var free = (string)JsonNode.Parse(await (await http.PostAsync("/v1/completions", Json(body))).Content.ReadAsStringAsync())!["choices"]![0]!["text"]!;
        var stop = free.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3];
        body["stop"] = new JsonArray(stop, "zzzz");
        var stopped = JsonNode.Parse(await (await http.PostAsync("/v1/completions", Json(body))).Content.ReadAsStringAsync())!["choices"]![0]!;
        Assert.Equal(free[..free.IndexOf(stop, StringComparison.Ordinal)], (string)stopped["text"]!);
        Assert.Equal("stop", (string)stopped["finish_reason"]!);
    }

    [ServerFact]
    public async Task OversizedBodyIs413WithTheOpenAiErrorShape()
    {
        using var http = fixture.Http();
        var body = new JsonObject { ["model"] = ServerFixture.BaseName, ["prompt"] = new string('a', 40_000) };
        using var response = await http.PostAsync("/v1/completions", Json(body));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        var error = await ErrorOf(response);
        Assert.Equal("request_too_large", (string)error["code"]!);
        Assert.Contains("16384", (string)error["message"]!);
        Assert.True(error.ContainsKey("type") && error.ContainsKey("param"));
    }

    [ServerFact]
    public async Task PromptLongerThanTheContextIs400ContextLengthExceeded()
    {
        using var http = fixture.Http();
        var longText = string.Join(' ', Enumerable.Repeat("Lily saw a big tree.", 150));   // far over 512 tokens, under 16 KB
        var body = new JsonObject
        {
            ["model"] = ServerFixture.BaseName, ["max_tokens"] = 10,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = longText }),
        };
        using var response = await http.PostAsync("/v1/chat/completions", Json(body));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorOf(response);
        Assert.Equal("context_length_exceeded", (string)error["code"]!);
        Assert.Equal("messages", (string)error["param"]!);
        Assert.Contains("maximum context length is 512", (string)error["message"]!);
    }

    [ServerTheory]
    [InlineData("{not json", null, "invalid_json")]
    [InlineData("{\"model\":\"stories260K\"}", "messages", null)]
    [InlineData("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model", null)]
    [InlineData("{\"model\":\"stories260K\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "messages[0].role", null)]
    [InlineData("{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", "temperature", null)]
    [InlineData("{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens", null)]
    [InlineData("{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":99}", "n", null)]
    [InlineData("{\"model\":\"stories260K\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", "stop[0]", null)]
    public async Task MalformedRequestsAre400NamingTheField(string body, string? param, string? code)
    {
        using var http = fixture.Http();
        using var response = await http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await ErrorOf(response);
        Assert.Equal("invalid_request_error", (string)error["type"]!);
        Assert.Equal(param, (string?)error["param"]);
        if (code is not null) Assert.Equal(code, (string)error["code"]!);
        if (param is not null) Assert.Contains(param.Split('.')[^1].Split('[')[0], (string)error["message"]!);
    }

    [ServerFact]
    public async Task MissingKeyIs401ButProbesAndMetricsStayOpen()
    {
        using var anonymous = fixture.Http(key: null);
        using var denied = await anonymous.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, denied.StatusCode);
        Assert.Equal("invalid_api_key", (string)(await ErrorOf(denied))["code"]!);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/admin/adapters")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health")).StatusCode);
        var ready = await anonymous.GetAsync("/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal("ready", (string)JsonNode.Parse(await ready.Content.ReadAsStringAsync())!["status"]!);
    }

    [ServerFact]
    public async Task TheRunsDashboardIsServedBesideTheApiWhenARunsFolderIsGiven()
    {
        using var runs = new Support.TempDir();
        await using var server = await SharpTune.Server.SharpTuneServer.StartAsync(fixture.Options() with { RunsDir = runs.Path, Adapters = new Dictionary<string, string>() });
        using var http = new HttpClient { BaseAddress = server.Url };
        using var page = await http.GetAsync("/dashboard");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType!.MediaType);
        Assert.Equal("[]", (await http.GetStringAsync("/api/runs")).Trim());
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/v1/models")).StatusCode);   // the API keeps its key
    }

    [ServerFact]
    public async Task AdaptersCanBeLoadedAndUnloadedAtRuntime()
    {
        using var http = fixture.Http();
        var load = await http.PostAsync("/admin/adapters", Json(new JsonObject { ["name"] = "tiny-a-again", ["path"] = fixture.AdapterDir("tiny-a") }));
        Assert.Equal(HttpStatusCode.Created, load.StatusCode);
        Assert.Equal("LORA", (string)JsonNode.Parse(await load.Content.ReadAsStringAsync())!["peft_type"]!);

        var chat = new JsonObject
        {
            ["model"] = "tiny-a-again", ["max_tokens"] = 10, ["temperature"] = 0,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "A bird" }),
        };
        var viaNew = await (await http.PostAsync("/v1/chat/completions", Json(chat))).Content.ReadAsStringAsync();
        chat["model"] = "tiny-a";
        var viaOriginal = await (await http.PostAsync("/v1/chat/completions", Json(chat))).Content.ReadAsStringAsync();
        Assert.Equal(JsonNode.Parse(viaOriginal)!["choices"]!.ToJsonString(), JsonNode.Parse(viaNew)!["choices"]!.ToJsonString());

        var listed = JsonNode.Parse(await http.GetStringAsync("/admin/adapters"))!["data"]!.AsArray().Select(a => (string)a!["name"]!);
        Assert.Contains("tiny-a-again", listed);
        Assert.Equal(HttpStatusCode.Conflict,
            (await http.PostAsync("/admin/adapters", Json(new JsonObject { ["name"] = "tiny-a-again", ["path"] = fixture.AdapterDir("tiny-a") }))).StatusCode);
        var missing = await http.PostAsync("/admin/adapters", Json(new JsonObject { ["name"] = "x", ["path"] = "/nonexistent/adapter" }));
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
        Assert.Equal("path", (string)(await ErrorOf(missing))["param"]!);

        Assert.Equal(HttpStatusCode.OK, (await http.DeleteAsync("/admin/adapters/tiny-a-again")).StatusCode);
        chat["model"] = "tiny-a-again";
        var gone = await http.PostAsync("/v1/chat/completions", Json(chat));
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.DeleteAsync("/admin/adapters/tiny-a-again")).StatusCode);
    }
}

/// <summary>A theory that skips visibly when stories260K is absent.</summary>
public sealed class ServerTheoryAttribute : TheoryAttribute
{
    public ServerTheoryAttribute()
    {
        if (!ServerFixture.Available) Skip = $"shared asset absent: {Support.TestAssets.Stories260K}";
    }
}
