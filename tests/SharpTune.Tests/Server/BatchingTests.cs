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

    [ServerFact]
    public async Task ConcurrentRequestsAreDecodedInOneBatchAndGiveTheSameTextAsAlone()
    {
        using var http = fixture.Http();
        var alone = JsonNode.Parse(await (await http.PostAsync("/v1/chat/completions", Chat(ServerFixture.BaseName, "Sue found a shell.", 16))).Content.ReadAsStringAsync())!;
        var before = await MetricsAsync();

        var responses = await Task.WhenAll(Enumerable.Range(0, 6).Select(async i =>
            JsonNode.Parse(await (await http.PostAsync("/v1/chat/completions",
                Chat(ServerFixture.BaseName, i == 0 ? "Sue found a shell." : $"Ben had {i} apples.", 16))).Content.ReadAsStringAsync())!));

        var after = await MetricsAsync();
        var batched = (after["sharptune_batch_rows_count"] - PrometheusText.Get(after, "sharptune_batch_rows_bucket{le=\"1\"}"))
                      - (before["sharptune_batch_rows_count"] - PrometheusText.Get(before, "sharptune_batch_rows_bucket{le=\"1\"}"));
        Assert.True(batched >= 1, "no batch with more than one row was decoded");
        // Left padding must not change a row's result: the batched answer equals the one decoded alone.
        Assert.Equal(alone["choices"]![0]!["message"]!["content"]!.ToString(), responses[0]["choices"]![0]!["message"]!["content"]!.ToString());
        Assert.True(after["sharptune_completion_tokens_total"] > before["sharptune_completion_tokens_total"]);
        Assert.True(PrometheusText.Get(after, "sharptune_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"}") >= 7);
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

        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Chat(ServerFixture.BaseName, "Lily and Ben played all day.", 120, stream: true) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var longText = new StringBuilder();
        async Task<bool> ReadEventAsync()
        {
            while (await reader.ReadLineAsync() is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                if (line == "data: [DONE]") return false;
                longText.Append((string?)JsonNode.Parse(line[6..])!["choices"]![0]!["delta"]!["content"] ?? "");
                return true;
            }
            return false;
        }
        for (var i = 0; i < 3; i++) Assert.True(await ReadEventAsync());   // role chunk + first text: the long row is decoding
        var joined = await Solo("Max saw a frog.", 12);
        while (await ReadEventAsync()) { }

        var after = await MetricsAsync();
        Assert.Equal(soloShort, joined);
        Assert.Equal(soloLong, longText.ToString());
        Assert.True(after["sharptune_batch_merges_total"] > before["sharptune_batch_merges_total"], "the joining request was not merged into the running batch");
        var multiRowSteps = (after["sharptune_step_rows_count"] - after["sharptune_step_rows_bucket{le=\"1\"}"])
                            - (before["sharptune_step_rows_count"] - before["sharptune_step_rows_bucket{le=\"1\"}"]);
        Assert.True(multiRowSteps > 0, "no forward pass advanced both rows together");
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
        var neighbours = Enumerable.Range(0, 4).Select(i => http.PostAsync("/v1/chat/completions", Chat(ServerFixture.BaseName, $"Noise {i}", 20, temperature: 1))).ToList();
        var shared = await TextOf(http.PostAsync("/v1/completions", Seeded()));
        await Task.WhenAll(neighbours);
        Assert.Equal(alone, shared);
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
        var deadline = DateTime.UtcNow.AddSeconds(20);
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
        await using var server = await SharpTuneServer.StartAsync(fixture.Options() with
        {
            ApiKeys = [], Adapters = new Dictionary<string, string>(), MaxQueue = 1, MaxBatchSize = 1,
        });
        using var http = new HttpClient { BaseAddress = server.Url };
        var responses = await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            http.PostAsync("/v1/chat/completions", Chat(server.ModelName, $"Story {i}", 200, temperature: 1))));
        var limited = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.NotEmpty(limited);
        Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
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
            // The 5 ms timeout fires while the request waits out the engine's 20 ms batch window: deterministic.
            ApiKeys = [], Adapters = new Dictionary<string, string>(), RequestTimeout = TimeSpan.FromMilliseconds(5),
            BatchWindow = TimeSpan.FromMilliseconds(20),
        });
        using var http = new HttpClient { BaseAddress = server.Url };
        using var response = await http.PostAsync("/v1/chat/completions", Chat(server.ModelName, "Once", 480, temperature: 1));
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("timeout", (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!);
    }
}
