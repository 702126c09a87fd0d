using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using SharpTune.Server;

namespace SharpTune.Tests.Server;

/// <summary>Concurrency: requests batched together, the bounded queue, disconnects, and a small bounded load test.</summary>
public sealed class BatchingTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static StringContent Chat(string model, string text, int maxTokens, bool stream = false, double temperature = 0) =>
        new(new JsonObject
        {
            ["model"] = model, ["max_tokens"] = maxTokens, ["temperature"] = temperature, ["stream"] = stream,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = text }),
        }.ToJsonString(), Encoding.UTF8, "application/json");

    private async Task<Dictionary<string, double>> MetricsAsync()
    {
        using var http = fixture.Http(key: null);
        using var response = await http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.MediaType);
        return PrometheusText.Parse(await response.Content.ReadAsStringAsync());
    }

    /// <summary>Fails the test instead of hanging when something it waits for never happens (not a speed limit).</summary>
    private static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(2);

    [ServerFact]
    public async Task ConcurrentRequestsAreDecodedInOneBatchAndGiveTheSameTextAsAlone()
    {
        using var http = fixture.Http();
        var alone = JsonNode.Parse(await (await http.PostAsync("/v1/chat/completions", Chat(ServerFixture.BaseName, "Sue found a shell.", 16))).Content.ReadAsStringAsync())!;
        var before = await MetricsAsync();

        // The engine admits nothing until all six requests are queued, however slowly they arrive.
        var open = false;
        fixture.Gate = s => open || (open = s.QueuedRequests >= 6);
        JsonNode[] responses;
        try
        {
            responses = await Task.WhenAll(Enumerable.Range(0, 6).Select(async i =>
            {
                using var response = await http.PostAsync("/v1/chat/completions",
                    Chat(ServerFixture.BaseName, i == 0 ? "Sue found a shell." : $"Ben had {i} apples.", 16));
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                return JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
            })).WaitAsync(HangGuard);
        }
        finally { fixture.Gate = null; }

        var after = await MetricsAsync();
        // Exactly one batch started, holding all six rows.
        Assert.Equal(1, after["sharptune_batch_rows_count"] - before["sharptune_batch_rows_count"]);
        Assert.Equal(6, after["sharptune_batch_rows_sum"] - before["sharptune_batch_rows_sum"]);
        // Left padding must not change a row's result: the batched answer equals the one decoded alone.
        Assert.Equal(alone["choices"]![0]!["message"]!["content"]!.ToString(), responses[0]["choices"]![0]!["message"]!["content"]!.ToString());
        var completionTokens = responses.Sum(r => (int)r["usage"]!["completion_tokens"]!);
        Assert.Equal(completionTokens, after["sharptune_completion_tokens_total"] - before["sharptune_completion_tokens_total"]);
        Assert.Equal(6, PrometheusText.Get(after, "sharptune_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}")
                        - PrometheusText.Get(before, "sharptune_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}"));
        Assert.Contains("sharptune_request_duration_seconds_count{endpoint=\"/v1/chat/completions\"}", after.Keys);
        Assert.Contains("sharptune_time_to_first_token_seconds_count", after.Keys);
        Assert.Contains("sharptune_queue_depth", after.Keys);
    }

    [ServerFact]
    public async Task ARequestArrivingMidDecodeJoinsTheRunningBatchAndBothTextsMatchTheirSoloRuns()
    {
        using var http = fixture.Http();
        async Task<string> Solo(string text, int maxTokens) =>
            (string)JsonNode.Parse(await (await http.PostAsync("/v1/chat/completions", Chat(ServerFixture.BaseName, text, maxTokens))).Content.ReadAsStringAsync())!
                ["choices"]![0]!["message"]!["content"]!;
        var soloLong = await Solo("Lily and Ben played all day.", 120);
        var soloShort = await Solo("Max saw a frog.", 12);
        var before = await MetricsAsync();

        // The long row decodes three steps, then the engine holds it until the short request is queued: the short one
        // arrives mid-decode however fast or slow the machine is.
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var phase = 0;   // 0: waiting for the long request; 1: decoding it alone; 2: the short one has arrived
        long firstStep = 0;
        fixture.Gate = s =>
        {
            if (phase == 0 && s.QueuedRequests > 0) (phase, firstStep) = (1, s.Steps);
            else if (phase == 1 && s.QueuedRequests > 0) phase = 2;
            if (phase != 1) return phase == 2;
            if (s.Steps - firstStep <= 3) return true;
            held.TrySetResult();
            return false;
        };
        string joinedText;
        var longText = new StringBuilder();
        try
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(ServerFixture.BaseName, "Lily and Ben played all day.", 120, stream: true) };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            var reading = ReadStreamAsync(response, longText);
            await held.Task.WaitAsync(HangGuard);
            joinedText = await Solo("Max saw a frog.", 12).WaitAsync(HangGuard);
            await reading.WaitAsync(HangGuard);
        }
        finally { fixture.Gate = null; }

        var after = await MetricsAsync();
        Assert.Equal(soloShort, joinedText);
        Assert.Equal(soloLong, longText.ToString());
        Assert.True(after["sharptune_batch_merges_total"] > before["sharptune_batch_merges_total"], "the joining request was not merged into the running batch");
        var multiRowSteps = (after["sharptune_step_rows_count"] - after["sharptune_step_rows_bucket{le=\"1\"}"])
                            - (before["sharptune_step_rows_count"] - before["sharptune_step_rows_bucket{le=\"1\"}"]);
        Assert.True(multiRowSteps > 0, "no forward pass advanced both rows together");
    }

    /// <summary>Appends a chat stream's text deltas to <paramref name="text"/> until [DONE].</summary>
    private static async Task ReadStreamAsync(HttpResponseMessage response, StringBuilder text)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (line == "data: [DONE]") return;
            text.Append((string?)JsonNode.Parse(line[6..])!["choices"]![0]!["delta"]!["content"] ?? "");
        }
    }

    [ServerFact]
    public async Task ASeededSampleIsTheSameAloneAndWhileSharingTheBatch()
    {
        using var http = fixture.Http();
        StringContent Seeded() => new(new JsonObject
        {
            ["model"] = ServerFixture.BaseName, ["prompt"] = "The sun was hot.", ["max_tokens"] = 20, ["temperature"] = 1.0, ["seed"] = 1234,
        }.ToJsonString(), Encoding.UTF8, "application/json");
        async Task<string> TextOf(Task<HttpResponseMessage> response) =>
            (string)JsonNode.Parse(await (await response).Content.ReadAsStringAsync())!["choices"]![0]!["text"]!;

        var alone = await TextOf(http.PostAsync("/v1/completions", Seeded()));
        // The seeded request is admitted together with four sampling neighbours, never alone.
        var open = false;
        fixture.Gate = s => open || (open = s.QueuedRequests >= 5);
        string shared;
        try
        {
            var neighbours = Enumerable.Range(0, 4).Select(i => http.PostAsync("/v1/chat/completions", Chat(ServerFixture.BaseName, $"Noise {i}", 20, temperature: 1))).ToList();
            shared = await TextOf(http.PostAsync("/v1/completions", Seeded())).WaitAsync(HangGuard);
            await Task.WhenAll(neighbours).WaitAsync(HangGuard);
        }
        finally { fixture.Gate = null; }
        Assert.Equal(alone, shared);
    }

    [ServerFact]
    public async Task RequestsWithDifferentSamplingSettingsInOneBatchEachGetTheirSoloText()
    {
        using var http = fixture.Http();
        // Greedy, three seeded samplers with their own temperature / top_p / n, and one long row that outlives the others
        // (so the batch is compacted and its generator moves on with it).
        JsonObject[] bodies =
        [
            new() { ["prompt"] = "Sue found a shell.", ["max_tokens"] = 16, ["temperature"] = 0 },
            new() { ["prompt"] = "The sun was hot.", ["max_tokens"] = 12, ["temperature"] = 0.7, ["seed"] = 5 },
            new() { ["prompt"] = "Tom had a dog.", ["max_tokens"] = 14, ["temperature"] = 1.2, ["top_p"] = 0.8, ["seed"] = 6, ["n"] = 2 },
            new() { ["prompt"] = "Once upon a time", ["max_tokens"] = 48, ["temperature"] = 1.0, ["seed"] = 7 },
        ];
        async Task<string[]> Texts(JsonObject body)
        {
            body["model"] = ServerFixture.BaseName;
            using var response = await http.PostAsync("/v1/completions", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
            return json["choices"]!.AsArray().OrderBy(c => (int)c!["index"]!).Select(c => (string)c!["text"]!).ToArray();
        }
        var alone = new List<string[]>();
        foreach (var body in bodies) alone.Add(await Texts((JsonObject)body.DeepClone()));
        var before = await MetricsAsync();

        var open = false;
        fixture.Gate = s => open || (open = s.QueuedRequests >= bodies.Length);
        string[][] together;
        try
        {
            together = await Task.WhenAll(bodies.Select(b => Texts((JsonObject)b.DeepClone()))).WaitAsync(HangGuard);
        }
        finally { fixture.Gate = null; }

        var after = await MetricsAsync();
        Assert.Equal(1, after["sharptune_batch_rows_count"] - before["sharptune_batch_rows_count"]);
        Assert.Equal(5, after["sharptune_batch_rows_sum"] - before["sharptune_batch_rows_sum"]);
        for (var i = 0; i < bodies.Length; i++) Assert.Equal(alone[i], together[i]);
        Assert.NotEqual(together[2][0], together[2][1]);   // n = 2: the rows sample independently
    }

    [ServerFact]
    public async Task ADisconnectedStreamIsDroppedWithoutHoldingTheOthers()
    {
        using var http = fixture.Http();
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(ServerFixture.BaseName, "A long story", 400, stream: true, temperature: 1) };
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var stream = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[64];
        Assert.True(await stream.ReadAsync(buffer) > 0);
        response.Dispose();   // hang up mid-stream

        var other = await http.PostAsync("/v1/chat/completions", Chat(ServerFixture.BaseName, "Tom ran.", 8));
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        var deadline = DateTime.UtcNow + HangGuard;
        Dictionary<string, double> metrics;
        do
        {
            await Task.Delay(50);
            metrics = await MetricsAsync();
        } while (metrics["sharptune_active_rows"] > 0 && DateTime.UtcNow < deadline);
        Assert.Equal(0, metrics["sharptune_active_rows"]);
    }

    [ServerFact]
    public async Task BoundedLoadOfEightClientsThreeRequestsEachHasNo5xxAndEveryResponseComplete()
    {
        string[] models = [ServerFixture.BaseName, "tiny-a", "tiny-b"];
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(async client =>
        {
            using var http = fixture.Http();
            var outcomes = new List<(HttpStatusCode Status, bool Complete)>();
            for (var i = 0; i < 3; i++)
            {
                var stream = (client + i) % 2 == 0;
                using var response = await http.PostAsync("/v1/chat/completions",
                    Chat(models[(client + i) % models.Length], $"Client {client} asks {i}", 8, stream, temperature: 0.7));
                var body = await response.Content.ReadAsStringAsync();
                var complete = stream
                    ? body.EndsWith("data: [DONE]\n\n", StringComparison.Ordinal) && body.Contains("\"finish_reason\":\"")
                    : JsonNode.Parse(body)!["choices"]![0]!["finish_reason"] is not null;
                outcomes.Add((response.StatusCode, complete));
            }
            return outcomes;
        }));
        var all = results.SelectMany(r => r).ToList();
        Assert.Equal(24, all.Count);
        Assert.All(all, o => Assert.Equal(HttpStatusCode.OK, o.Status));
        Assert.All(all, o => Assert.True(o.Complete));
    }

    [ServerFact]
    public async Task AFullQueueAnswers429WithTheOpenAiErrorShape()
    {
        using var release = new ManualResetEventSlim();
        await using var server = await SharpTuneServer.StartAsync(fixture.Options() with
        {
            // The engine admits nothing until released: one request fills the queue of one, the other five must be refused.
            ApiKeys = [], Adapters = new Dictionary<string, string>(), MaxQueue = 1, MaxBatchSize = 1, EngineGate = _ => release.IsSet,
        });
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
        var posts = Enumerable.Range(0, 6).Select(i => http.PostAsync("/v1/chat/completions", Chat(server.ModelName, $"Story {i}", 8, temperature: 1))).ToList();
        // One snapshot per round: counting the finished posts and then listing the unfinished ones raced, and a post
        // finishing in between left only the held one to wait for.
        while (true)
        {
            var pending = posts.Where(p => !p.IsCompleted).ToList();
            if (posts.Count - pending.Count >= 5) break;
            await Task.WhenAny(pending).WaitAsync(HangGuard);
        }
        release.Set();
        var responses = await Task.WhenAll(posts).WaitAsync(HangGuard);
        var limited = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.Equal(5, limited.Count);
        Assert.Single(responses, r => r.StatusCode == HttpStatusCode.OK);
        var error = JsonNode.Parse(await limited[0].Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("rate_limit_exceeded", (string)error["code"]!);
        Assert.Equal("rate_limit_error", (string)error["type"]!);
        Assert.True(limited[0].Headers.Contains("Retry-After"));
    }

    [ServerFact]
    public async Task ARequestPastItsTimeoutIsEndedWith504()
    {
        await using var server = await SharpTuneServer.StartAsync(fixture.Options() with
        {
            // The engine never admits the request, so its timeout is the only way it can end.
            ApiKeys = [], Adapters = new Dictionary<string, string>(), RequestTimeout = TimeSpan.FromMilliseconds(200), EngineGate = _ => false,
        });
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
        using var response = await http.PostAsync("/v1/chat/completions", Chat(server.ModelName, "Once", 8, temperature: 1)).WaitAsync(HangGuard);
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("timeout", (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!);
    }
}
