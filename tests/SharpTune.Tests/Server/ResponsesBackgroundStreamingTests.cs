#pragma warning disable OPENAI001
using System.ClientModel;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json.Nodes;
using OpenAI.Responses;

namespace SharpTune.Tests.Server;

/// <summary>
/// Background responses created with <c>stream: true</c>, as OpenAI's background mode streams them: the same events a
/// direct stream sends after a queued start, numbered from 0; a dropped stream resumed with
/// <c>GET /v1/responses/{id}?stream=true&amp;starting_after=N</c> gets exactly the events after N, from any number of
/// readers, while the response generates on; a cancel ends the stream cancelled. Raw HTTP and the official .NET SDK.
/// </summary>
public sealed class ResponsesBackgroundStreamingTests(AgentServerFixture fixture) : IClassFixture<AgentServerFixture>
{
    private static string Body(int maxTokens, bool background, bool stream = true) =>
        $$"""{"model":"random-qwen-chat","input":"Tell me a story.","max_output_tokens":{{maxTokens}},"temperature":0,"stream":{{(stream ? "true" : "false")}},"background":{{(background ? "true" : "false")}}}""";

    private static async Task<HttpResponseMessage> OpenAsync(HttpClient http, HttpMethod method, string path, string? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        // The body is read only to explain a failure: a stream's body ends only when its response does.
        if (response.StatusCode != HttpStatusCode.OK) Assert.Fail($"{method} {path}: {response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        return response;
    }

    /// <summary>The data of each server-sent event, checked to carry the type its <c>event:</c> line names.</summary>
    private static async IAsyncEnumerable<JsonObject> EventsAsync(HttpResponseMessage response, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellation));
        string? name = null;
        while (await reader.ReadLineAsync(cancellation) is { } line)
        {
            if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line["event: ".Length..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                var data = JsonNode.Parse(line["data: ".Length..])!.AsObject();
                Assert.Equal(name, (string?)data["type"]);
                yield return data;
            }
        }
    }

    private static async Task<List<JsonObject>> ReadAllAsync(HttpResponseMessage response)
    {
        var events = new List<JsonObject>();
        await foreach (var e in EventsAsync(response).WithCancellation(new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token)) events.Add(e);
        response.Dispose();
        return events;
    }

    private static int Sequence(JsonObject e) => e["sequence_number"]!.GetValue<int>();
    private static string Type(JsonObject e) => (string)e["type"]!;
    private static string Deltas(IEnumerable<JsonObject> events) =>
        string.Concat(events.Where(e => Type(e) == "response.output_text.delta").Select(e => (string)e["delta"]!));
    private static string OutputText(JsonNode response) =>
        string.Concat(response["output"]!.AsArray().SelectMany(i => i!["content"]?.AsArray() ?? []).Select(p => (string?)p!["text"]));

    [AgentServerFact]
    public async Task ABackgroundStreamSendsTheDirectStreamsEventsAfterAQueuedStartAndReplaysThem()
    {
        using var http = fixture.Http();
        var direct = await ReadAllAsync(await OpenAsync(http, HttpMethod.Post, "/v1/responses", Body(24, background: false)));
        var background = await ReadAllAsync(await OpenAsync(http, HttpMethod.Post, "/v1/responses", Body(24, background: true)));

        Assert.Equal(Enumerable.Range(0, direct.Count), direct.Select(Sequence));
        Assert.Equal(Enumerable.Range(0, background.Count), background.Select(Sequence));
        Assert.Equal(["response.created", "response.in_progress"], direct.Take(2).Select(Type));
        Assert.Equal(["response.created", "response.queued", "response.in_progress"], background.Take(3).Select(Type));
        Assert.Equal(["queued", "queued", "in_progress"], background.Take(3).Select(e => (string)e["response"]!["status"]!));
        Assert.All(background.Take(3), e => Assert.True((bool)e["response"]!["background"]!));
        // From there on the same events (item ids aside: each response names its own), the same text, the same end.
        Assert.Equal(direct.Skip(2).Select(Type), background.Skip(3).Select(Type));
        Assert.Equal(Deltas(direct), Deltas(background));
        Assert.Equal("response.incomplete", Type(background[^1]));   // 24 tokens of a random-weight model run out of budget
        Assert.Equal(OutputText(direct[^1]["response"]!), OutputText(background[^1]["response"]!));
        Assert.Equal(Deltas(background), OutputText(background[^1]["response"]!));
        Assert.NotEmpty(Deltas(background));

        // Stored, it polls to its final state, and streams again from the start (or after any event) once it has ended.
        var id = (string)background[0]["response"]!["id"]!;
        var polled = JsonNode.Parse(await http.GetStringAsync($"/v1/responses/{id}"))!;
        Assert.Equal(background[^1]["response"]!.ToJsonString(), polled.ToJsonString());
        var replay = await ReadAllAsync(await OpenAsync(http, HttpMethod.Get, $"/v1/responses/{id}?stream=true"));
        Assert.Equal(background.Select(e => e.ToJsonString()), replay.Select(e => e.ToJsonString()));
        var tail = await ReadAllAsync(await OpenAsync(http, HttpMethod.Get, $"/v1/responses/{id}?stream=true&starting_after=4"));
        Assert.Equal(background.Skip(5).Select(e => e.ToJsonString()), tail.Select(e => e.ToJsonString()));
        Assert.Empty(await ReadAllAsync(await OpenAsync(http, HttpMethod.Get, $"/v1/responses/{id}?stream=true&starting_after={background.Count - 1}")));
    }

    [AgentServerFact]
    public async Task TheOfficialSdkStreamsABackgroundResponseAndResumesItAfterASequenceNumber()
    {
        var client = new ResponsesClient(new ApiKeyCredential(ServerFixture.Key), new ResponsesClientOptions { Endpoint = fixture.Server.OpenAiEndpoint });
        var options = new CreateResponseOptions("random-qwen-chat", [ResponseItem.CreateUserMessageItem("Tell me a story.")])
        {
            MaxOutputTokenCount = 24, Temperature = 0, BackgroundModeEnabled = true, StreamingEnabled = true,
        };
        var updates = new List<StreamingResponseUpdate>();
        await foreach (var update in await client.CreateResponseStreamingAsync(options)) updates.Add(update);
        Assert.Equal(Enumerable.Range(0, updates.Count), updates.Select(u => u.SequenceNumber));
        Assert.Equal(["Created", "Queued", "InProgress", "OutputItemAdded"], updates.Take(4).Select(u => u.GetType().Name["StreamingResponse".Length..^"Update".Length]));
        var id = ((StreamingResponseCreatedUpdate)updates[0]).Response.Id;
        var final = Assert.IsType<StreamingResponseIncompleteUpdate>(updates[^1]).Response;
        Assert.Equal(string.Concat(updates.OfType<StreamingResponseOutputTextDeltaUpdate>().Select(d => d.Delta)), final.GetOutputText());

        // The SDK's resume: GET /v1/responses/{id}?stream=true&starting_after=5.
        var resumed = new List<StreamingResponseUpdate>();
        await foreach (var update in await client.GetResponseStreamingAsync(new GetResponseOptions(id) { StartingAfter = 5, StreamingEnabled = true })) resumed.Add(update);
        Assert.Equal(Enumerable.Range(6, updates.Count - 6), resumed.Select(u => u.SequenceNumber));
        Assert.Equal(final.GetOutputText(), Assert.IsType<StreamingResponseIncompleteUpdate>(resumed[^1]).Response.GetOutputText());
    }

    /// <summary>Lets the engine decode <paramref name="steps"/> steps of the next request, then holds it until the returned event is set.</summary>
    private ManualResetEventSlim HoldAfter(int steps)
    {
        var release = new ManualResetEventSlim(false);
        long? first = null;
        fixture.Gate = state =>
        {
            if (release.IsSet || state.LiveRows == 0) return true;
            first ??= state.Steps;
            return state.Steps - first < steps;
        };
        return release;
    }

    [AgentServerFact]
    public async Task ADroppedStreamResumesWithExactlyTheRestForEveryReaderAndTheResponseGoesOn()
    {
        using var http = fixture.Http();
        using var release = HoldAfter(20);
        try
        {
            var first = new List<JsonObject>();
            var stream = await OpenAsync(http, HttpMethod.Post, "/v1/responses", Body(300, background: true));
            await foreach (var e in EventsAsync(stream).WithCancellation(new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token))
            {
                first.Add(e);
                if (first.Count == 6) break;
            }
            stream.Dispose();   // the client goes away after event 5; the response is not cancelled by it
            var id = (string)first[0]["response"]!["id"]!;

            // Two readers resume from the last event seen while the response is held mid-way: they get what was kept, then wait
            // for it live; released, each gets every later event once, to the end.
            var readers = Enumerable.Range(0, 2).Select(async _ =>
                await ReadAllAsync(await OpenAsync(http, HttpMethod.Get, $"/v1/responses/{id}?stream=true&starting_after=5"))).ToArray();
            await Task.Delay(300);
            Assert.DoesNotContain(readers, r => r.IsCompleted);
            Assert.Equal("in_progress", (string)JsonNode.Parse(await http.GetStringAsync($"/v1/responses/{id}"))!["status"]!);
            release.Set();
            var rests = await Task.WhenAll(readers);
            Assert.Equal(rests[0].Select(e => e.ToJsonString()), rests[1].Select(e => e.ToJsonString()));
            var whole = first.Concat(rests[0]).ToList();
            Assert.Equal(Enumerable.Range(0, whole.Count), whole.Select(Sequence));
            Assert.Contains(Type(whole[^1]), new[] { "response.completed", "response.incomplete" });
            Assert.Equal(Deltas(whole), OutputText(whole[^1]["response"]!));

            var replay = await ReadAllAsync(await OpenAsync(http, HttpMethod.Get, $"/v1/responses/{id}?stream=true"));
            Assert.Equal(whole.Select(e => e.ToJsonString()), replay.Select(e => e.ToJsonString()));
            var polled = JsonNode.Parse(await http.GetStringAsync($"/v1/responses/{id}"))!;
            Assert.Equal(whole[^1]["response"]!.ToJsonString(), polled.ToJsonString());
        }
        finally
        {
            release.Set();
            fixture.Gate = null;
        }
    }

    [AgentServerFact]
    public async Task CancellingEndsTheStreamCancelled()
    {
        using var http = fixture.Http();
        using var release = HoldAfter(20);
        try
        {
            var stream = await OpenAsync(http, HttpMethod.Post, "/v1/responses", Body(1900, background: true));
            var events = new List<JsonObject>();
            string? id = null;
            await foreach (var e in EventsAsync(stream).WithCancellation(new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token))
            {
                events.Add(e);
                id ??= (string)e["response"]!["id"]!;
                if (Type(e) == "response.output_text.delta" && events.Count(x => Type(x) == "response.output_text.delta") == 1)
                {
                    // Cancelled while it generates (held mid-way): its stream ends with the cancellation.
                    var cancelled = await http.PostAsync($"/v1/responses/{id}/cancel", null);
                    Assert.Equal("cancelled", (string)JsonNode.Parse(await cancelled.Content.ReadAsStringAsync())!["status"]!);
                }
            }
            stream.Dispose();
            Assert.Equal(Enumerable.Range(0, events.Count), events.Select(Sequence));
            Assert.Equal("response.cancelled", Type(events[^1]));
            Assert.Equal("cancelled", (string)events[^1]["response"]!["status"]!);
            Assert.DoesNotContain(events, e => Type(e) is "response.completed" or "response.incomplete");
            var resumed = await ReadAllAsync(await OpenAsync(http, HttpMethod.Get, $"/v1/responses/{id}?stream=true&starting_after={events.Count - 2}"));
            Assert.Equal([events[^1].ToJsonString()], resumed.Select(e => e.ToJsonString()));
            // The official SDK reads the cancelled end too (it has no type of its own for it: a plain update).
            var client = new ResponsesClient(new ApiKeyCredential(ServerFixture.Key), new ResponsesClientOptions { Endpoint = fixture.Server.OpenAiEndpoint });
            var updates = new List<StreamingResponseUpdate>();
            await foreach (var update in await client.GetResponseStreamingAsync(new GetResponseOptions(id) { StartingAfter = events.Count - 3, StreamingEnabled = true }))
                updates.Add(update);
            Assert.Equal([events.Count - 2, events.Count - 1], updates.Select(u => u.SequenceNumber));
        }
        finally
        {
            release.Set();
            fixture.Gate = null;
        }
    }

    [AgentServerFact]
    public async Task OnlyAStreamedBackgroundResponseCanBeStreamedByIdAndBadCursorsNameTheField()
    {
        using var http = fixture.Http();
        async Task<(int Status, JsonNode? Error)> Get(string path)
        {
            var response = await http.GetAsync(path);
            return ((int)response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]);
        }

        var direct = JsonNode.Parse(await (await http.PostAsync("/v1/responses", new StringContent(Body(16, background: false, stream: false), Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync())!;
        var polledOnly = JsonNode.Parse(await (await http.PostAsync("/v1/responses", new StringContent(Body(16, background: true, stream: false), Encoding.UTF8, "application/json"))).Content.ReadAsStringAsync())!;
        var streamed = await ReadAllAsync(await OpenAsync(http, HttpMethod.Post, "/v1/responses", Body(16, background: true)));
        var streamedId = (string)streamed[0]["response"]!["id"]!;

        foreach (var (path, status, param) in new[]
        {
            ($"/v1/responses/{(string)direct["id"]!}?stream=true", 400, "stream"),
            ($"/v1/responses/{(string)direct["id"]!}?stream=true&starting_after=2", 400, "stream"),
            ($"/v1/responses/{(string)polledOnly["id"]!}?stream=true", 400, "stream"),
            ("/v1/responses/resp_missing?stream=true&starting_after=2", 404, "response_id"),
            ($"/v1/responses/{streamedId}?stream=yes", 400, "stream"),
            ($"/v1/responses/{streamedId}?stream=true&starting_after=-1", 400, "starting_after"),
            ($"/v1/responses/{streamedId}?stream=true&starting_after=x", 400, "starting_after"),
        })
        {
            var (got, error) = await Get(path);
            Assert.True((status, param) == (got, (string?)error?["param"]), $"{path}: {got} {error}");
            Assert.Equal("invalid_request_error", (string?)error!["type"]);
            Assert.False(string.IsNullOrEmpty((string?)error["message"]));
        }
        // Without stream, starting_after is not looked at: the stored response as usual.
        Assert.Equal((string)direct["id"]!, (string)JsonNode.Parse(await http.GetStringAsync($"/v1/responses/{(string)direct["id"]!}?starting_after=2"))!["id"]!);
    }
}
