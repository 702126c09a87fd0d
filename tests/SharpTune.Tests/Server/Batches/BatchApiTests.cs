#pragma warning disable OPENAI001   // the SDK marks its batch client experimental
using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using OpenAI.Files;
using SharpTune.Tests.Server.FineTuning;
using static SharpTune.Tests.Server.Batches.BatchHarness;

namespace SharpTune.Tests.Server.Batches;

/// <summary>
/// The Batch API end to end over real loopback HTTP: the official OpenAI .NET SDK uploads, creates, polls and downloads;
/// every line's answer is compared with what the live endpoint answers the same body.
/// </summary>
public sealed class BatchApiTests(JobsHarness harness) : IClassFixture<JobsHarness>
{
    [ServerFact]
    public async Task TheSdkRunsAChatBatchWhoseLinesEqualTheLiveEndpointsAnswersAndABadLineOnlyFailsItself()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        var sdk = JobsHarness.Sdk(server);
        var bodies = new Dictionary<string, JsonObject>
        {
            ["story"] = Chat("Once upon a time", 10),
            ["cat"] = Chat("Lily saw a cat", 6),
            ["two"] = Chat("Tom had a ball", 5),
            ["no-messages"] = new JsonObject { ["model"] = JobsHarness.BaseName, ["max_tokens"] = 4 },
            ["streamed"] = Chat("Once upon a time", 4),
        };
        bodies["two"]["n"] = 2;
        bodies["streamed"]["stream"] = true;
        var content = string.Join("\n", bodies.Select(b => Line(b.Key, "/v1/chat/completions", b.Value))) + "\n";

        var files = sdk.GetOpenAIFileClient();
        var input = (await files.UploadFileAsync(BinaryData.FromString(content).ToStream(), "requests.jsonl", FileUploadPurpose.Batch)).Value;
        Assert.Equal(FilePurpose.Batch, input.Purpose);
        var operation = await sdk.GetBatchClient().CreateBatchAsync(BinaryContent.Create(BinaryData.FromObjectAsJson(new
        {
            input_file_id = input.Id,
            endpoint = "/v1/chat/completions",
            completion_window = "24h",
            metadata = new { purpose = "nightly eval" },
        })), waitUntilCompleted: false);
        using (var guard = new CancellationTokenSource(JobsHarness.HangGuard)) await operation.WaitForCompletionAsync(guard.Token);
        var batch = JsonNode.Parse((await operation.GetBatchAsync(null)).GetRawResponse().Content.ToString())!.AsObject();

        Assert.Equal("completed", batch["status"]!.GetValue<string>());
        Assert.Equal("batch", batch["object"]!.GetValue<string>());
        Assert.Equal(JobsHarness.BaseName, batch["model"]!.GetValue<string>());
        Assert.Equal("nightly eval", batch["metadata"]!["purpose"]!.GetValue<string>());
        Assert.Equal("""{"total":5,"completed":3,"failed":2}""", batch["request_counts"]!.ToJsonString());
        Assert.Null(batch["errors"]);
        Assert.Null(batch["failed_at"]);
        var stamps = new[] { "created_at", "in_progress_at", "finalizing_at", "completed_at" }.Select(k => batch[k]!.GetValue<long>()).ToArray();
        Assert.Equal(stamps.Order(), stamps);

        // Successes in the output file, in input order, each the live endpoint's answer to the same body.
        var outputId = batch["output_file_id"]!.GetValue<string>();
        var outputText = (await files.DownloadFileAsync(outputId)).Value.ToString();
        var output = outputText.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(["story", "cat", "two"], output.Select(o => o["custom_id"]!.GetValue<string>()));
        long promptTokens = 0, completionTokens = 0;
        foreach (var line in output)
        {
            var (status, live) = await LiveAsync(http, "/v1/chat/completions", bodies[line["custom_id"]!.GetValue<string>()]);
            Assert.Equal(200, status);
            Assert.StartsWith("batch_req_", line["id"]!.GetValue<string>());
            Assert.Null(line["error"]);
            var response = line["response"]!;
            Assert.Equal(200, response["status_code"]!.GetValue<int>());
            Assert.StartsWith("req_", response["request_id"]!.GetValue<string>());
            Assert.StartsWith("chatcmpl-", response["body"]!["id"]!.GetValue<string>());
            Assert.Equal(Comparable(live), Comparable(response["body"]));
            promptTokens += live["usage"]!["prompt_tokens"]!.GetValue<long>();
            completionTokens += live["usage"]!["completion_tokens"]!.GetValue<long>();
        }
        Assert.Equal(2, output[2]["response"]!["body"]!["choices"]!.AsArray().Count);
        Assert.Equal(promptTokens, batch["usage"]!["input_tokens"]!.GetValue<long>());
        Assert.Equal(completionTokens, batch["usage"]!["output_tokens"]!.GetValue<long>());

        // Failures in the error file: the bad body with exactly the live endpoint's 400, the streamed one refused.
        var errors = await LinesAsync(http, batch["error_file_id"]!.GetValue<string>());
        Assert.Equal(["no-messages", "streamed"], errors.Keys);
        var (badStatus, badLive) = await LiveAsync(http, "/v1/chat/completions", bodies["no-messages"]);
        Assert.Equal(400, badStatus);
        Assert.Equal(400, errors["no-messages"]["response"]!["status_code"]!.GetValue<int>());
        Assert.Equal(badLive.ToJsonString(), errors["no-messages"]["response"]!["body"]!.ToJsonString());
        Assert.Equal(400, errors["streamed"]["response"]!["status_code"]!.GetValue<int>());
        Assert.Equal("stream", errors["streamed"]["response"]!["body"]!["error"]!["param"]!.GetValue<string>());

        // The results are files like any other: listed under their purpose, and deletable.
        var listed = (await files.GetFilesAsync(FilePurpose.BatchOutput)).Value.Select(f => f.Id).ToHashSet();
        Assert.Equal(new HashSet<string> { outputId, batch["error_file_id"]!.GetValue<string>() }, listed);
        Assert.True((await files.DeleteFileAsync(outputId)).Value.Deleted);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/v1/files/{outputId}/content")).StatusCode);
    }

    [ServerFact]
    public async Task AnEmbeddingsBatchAnswersExactlyAsTheLiveEndpoint()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        var bodies = new[]
        {
            new JsonObject { ["model"] = JobsHarness.BaseName, ["input"] = "Lily saw a cat." },
            new JsonObject { ["model"] = JobsHarness.BaseName, ["input"] = new JsonArray("Tom ran.", "The sun was hot."), ["encoding_format"] = "base64" },
        };
        var fileId = await UploadIdAsync(http, string.Join("\n", bodies.Select((b, i) => Line($"e{i}", "/v1/embeddings", b))));
        var created = await CreateAsync(http, fileId, "/v1/embeddings");
        var batch = await WaitForAsync(http, created["id"]!.GetValue<string>(), "completed", "failed");
        Assert.Equal("completed", batch["status"]!.GetValue<string>());
        Assert.Null(batch["error_file_id"]);
        var output = await LinesAsync(http, batch["output_file_id"]!.GetValue<string>());
        for (var i = 0; i < bodies.Length; i++)
        {
            var (status, live) = await LiveAsync(http, "/v1/embeddings", bodies[i]);
            Assert.Equal(200, status);
            Assert.Equal(live.ToJsonString(), output[$"e{i}"]["response"]!["body"]!.ToJsonString());
        }
    }

    [ServerFact]
    public async Task TextCompletionAndResponsesBatchesAnswerAsTheirLiveEndpoints()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        var completion = new JsonObject { ["model"] = JobsHarness.BaseName, ["prompt"] = new JsonArray("Once upon a time", "Lily"), ["max_tokens"] = 6, ["temperature"] = 0 };
        var response = new JsonObject { ["model"] = JobsHarness.BaseName, ["input"] = "Tom had a ball", ["max_output_tokens"] = 16, ["temperature"] = 0 };

        var completions = await WaitForAsync(http, (await CreateAsync(http, await UploadIdAsync(http, Line("c", "/v1/completions", completion)), "/v1/completions"))["id"]!.GetValue<string>(), "completed", "failed");
        var (status, live) = await LiveAsync(http, "/v1/completions", completion);
        Assert.Equal(200, status);
        var line = (await LinesAsync(http, completions["output_file_id"]!.GetValue<string>()))["c"];
        Assert.StartsWith("cmpl-", line["response"]!["body"]!["id"]!.GetValue<string>());
        Assert.Equal(Comparable(live), Comparable(line["response"]!["body"]));

        var responses = await WaitForAsync(http, (await CreateAsync(http, await UploadIdAsync(http, Line("r", "/v1/responses", response)), "/v1/responses"))["id"]!.GetValue<string>(), "completed", "failed");
        (status, live) = await LiveAsync(http, "/v1/responses", response);
        Assert.Equal(200, status);
        var answer = (await LinesAsync(http, responses["output_file_id"]!.GetValue<string>()))["r"]["response"]!["body"]!;
        Assert.StartsWith("resp", answer["id"]!.GetValue<string>());
        Assert.Equal(live["status"]!.GetValue<string>(), answer["status"]!.GetValue<string>());
        // Ids and timestamps differ per response, and so does what the prefix cache held when each ran; the text and the
        // token counts are the model's and must not.
        Assert.NotEmpty(Text(live));
        Assert.Equal(Text(live), Text(answer));
        Assert.Equal(Counts(live), Counts(answer));

        static string Counts(JsonNode body)
        {
            var usage = body["usage"]!.DeepClone().AsObject();
            usage.Remove("input_tokens_details");
            return usage.ToJsonString();
        }
        static string Text(JsonNode body) => string.Concat(body["output"]!.AsArray()
            .SelectMany(item => item!["content"]?.AsArray() ?? []).Select(part => part!["text"]?.GetValue<string>()));
    }

    public static TheoryData<string, string, string> BadUploads => new()
    {
        { "repeated custom_id", Line("a", "/v1/chat/completions", Chat("Hi")) + "\n" + Line("a", "/v1/chat/completions", Chat("Yo")),
            "line 2: field 'custom_id': 'a' is already the custom_id of line 1" },
        { "GET", Line("a", "/v1/chat/completions", Chat("Hi")) + "\n" + Line("b", "/v1/chat/completions", Chat("Yo")).Replace("\"POST\"", "\"GET\""),
            "line 2: field 'method' must be 'POST', found 'GET'" },
        { "unserved url", Line("a", "/v1/chat/completions", Chat("Hi")) + "\n\n" + Line("b", "/v1/moderations", Chat("Yo")),
            "line 3: field 'url': '/v1/moderations' is not an endpoint batches run on this server" },
        { "body not an object", Line("a", "/v1/chat/completions", Chat("Hi")) + "\n" + """{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":"hi"}""",
            "line 2: field 'body' must be a JSON object" },
        { "no custom_id", """{"method":"POST","url":"/v1/chat/completions","body":{}}""", "line 1: field 'custom_id' is missing" },
        { "not JSON", Line("a", "/v1/chat/completions", Chat("Hi")) + "\n{\"custom_id\": ", "line 2: not valid JSON" },
        { "empty", "\n\n", "line 1: the file holds no requests" },
    };

    [ServerTheory]
    [MemberData(nameof(BadUploads))]
    public async Task AnInvalidBatchFileIsRefusedNamingTheLineAndNothingIsStored(string why, string content, string expected)
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        using var response = await UploadAsync(http, content);
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, why);
        Assert.StartsWith(expected, body["error"]!["message"]!.GetValue<string>());
        Assert.Equal("file", body["error"]!["param"]!.GetValue<string>());
        Assert.Empty(JsonNode.Parse(await http.GetStringAsync("/v1/files"))!["data"]!.AsArray());
    }

    [ServerFact]
    public async Task CreatingABatchChecksItsFieldsAndTheFileAndValidationFailsALineForAnotherEndpoint()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        using (var output = await UploadAsync(http, Line("a", "/v1/chat/completions", Chat("Hi")), purpose: "batch_output"))
            Assert.Equal(HttpStatusCode.BadRequest, output.StatusCode);   // only the server writes results
        var mixed = await UploadIdAsync(http, Line("a", "/v1/chat/completions", Chat("Hi")) + "\n" +
            Line("b", "/v1/embeddings", new JsonObject { ["model"] = JobsHarness.BaseName, ["input"] = "Hi" }));
        var training = JsonNode.Parse(await (await JobsHarness.UploadRawAsync(http, System.Text.Encoding.UTF8.GetBytes(JobsHarness.CompletionData(2)))).Content.ReadAsStringAsync())!["id"]!.GetValue<string>();

        async Task<JsonNode> Refused(HttpStatusCode status, JsonObject request)
        {
            using var response = await http.PostAsJsonAsync("/v1/batches", request);
            Assert.Equal(status, response.StatusCode);
            return JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
        }
        JsonObject Request(string file, string window = "24h", string endpoint = "/v1/chat/completions") =>
            new() { ["input_file_id"] = file, ["endpoint"] = endpoint, ["completion_window"] = window };
        Assert.Equal("completion_window", (await Refused(HttpStatusCode.BadRequest, Request(mixed, window: "1h")))["param"]!.GetValue<string>());
        Assert.Equal("endpoint", (await Refused(HttpStatusCode.BadRequest, Request(mixed, endpoint: "/v1/moderations")))["param"]!.GetValue<string>());
        Assert.Equal("input_file_id", (await Refused(HttpStatusCode.BadRequest, Request(training)))["param"]!.GetValue<string>());
        Assert.Equal("file_not_found", (await Refused(HttpStatusCode.NotFound, Request("file-000000000000000000000000")))["code"]!.GetValue<string>());
        var tooMuch = Request(mixed);
        tooMuch["metadata"] = new JsonObject(Enumerable.Range(0, 17).Select(i => KeyValuePair.Create($"k{i}", (JsonNode?)"v")));
        Assert.Equal("metadata", (await Refused(HttpStatusCode.BadRequest, tooMuch))["param"]!.GetValue<string>());

        var created = await CreateAsync(http, mixed);
        Assert.Equal("validating", created["status"]!.GetValue<string>());
        var failed = await WaitForAsync(http, created["id"]!.GetValue<string>(), "failed", "completed");
        Assert.Equal("failed", failed["status"]!.GetValue<string>());
        var error = failed["errors"]!["data"]!.AsArray().Single()!;
        Assert.Equal("url_mismatch", error["code"]!.GetValue<string>());
        Assert.Equal(2, error["line"]!.GetValue<int>());
        Assert.Equal("url", error["param"]!.GetValue<string>());
        Assert.NotNull(failed["failed_at"]);
        Assert.Null(failed["output_file_id"]);
        Assert.Equal(0, failed["request_counts"]!["completed"]!.GetValue<int>());
    }

    [ServerFact]
    public async Task BatchesListNewestFirstInPagesThatTheSdkFollows()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        var fileId = await UploadIdAsync(http, Line("a", "/v1/chat/completions", Chat("Hi", 2)));
        var ids = new List<string>();
        for (var i = 0; i < 3; i++) ids.Add((await CreateAsync(http, fileId))["id"]!.GetValue<string>());
        ids.Reverse();   // newest first

        var first = JsonNode.Parse(await http.GetStringAsync("/v1/batches?limit=2"))!;
        Assert.Equal(ids[..2], first["data"]!.AsArray().Select(b => b!["id"]!.GetValue<string>()));
        Assert.True(first["has_more"]!.GetValue<bool>());
        Assert.Equal(ids[1], first["last_id"]!.GetValue<string>());
        var second = JsonNode.Parse(await http.GetStringAsync($"/v1/batches?limit=2&after={ids[1]}"))!;
        Assert.Equal(ids[2..], second["data"]!.AsArray().Select(b => b!["id"]!.GetValue<string>()));
        Assert.False(second["has_more"]!.GetValue<bool>());
        Assert.Equal(HttpStatusCode.BadRequest, (await http.GetAsync("/v1/batches?limit=101")).StatusCode);

        var pages = new List<List<string>>();
        await foreach (var page in JobsHarness.Sdk(server).GetBatchClient().GetBatchesAsync(after: null, limit: 2, options: null).GetRawPagesAsync())
            pages.Add(JsonNode.Parse(page.GetRawResponse().Content.ToString())!["data"]!.AsArray().Select(b => b!["id"]!.GetValue<string>()).ToList());
        Assert.Equal([ids[..2], ids[2..]], pages);
        foreach (var id in ids) await WaitForAsync(http, id, "completed");
    }

    [ServerFact]
    public async Task WithScopedKeysABatchAndItsFilesBelongToTheKeyThatCreatedIt()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir(), o => o with { ScopedKeys = true });
        using var owner = JobsHarness.Http(server);
        using var other = JobsHarness.Http(server, JobsHarness.OtherKey);
        var fileId = await UploadIdAsync(owner, Line("a", "/v1/chat/completions", Chat("Hi", 2)));
        var id = (await CreateAsync(owner, fileId))["id"]!.GetValue<string>();
        var batch = await WaitForAsync(owner, id, "completed");
        var outputId = batch["output_file_id"]!.GetValue<string>();

        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/v1/batches/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.PostAsync($"/v1/batches/{id}/cancel", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/v1/files/{outputId}/content")).StatusCode);
        Assert.Empty(JsonNode.Parse(await other.GetStringAsync("/v1/batches"))!["data"]!.AsArray());
        using var borrowed = await other.PostAsJsonAsync("/v1/batches", new JsonObject
        {
            ["input_file_id"] = fileId, ["endpoint"] = "/v1/chat/completions", ["completion_window"] = "24h",
        });
        Assert.Equal(HttpStatusCode.NotFound, borrowed.StatusCode);
        Assert.Equal([id], JsonNode.Parse(await owner.GetStringAsync("/v1/batches"))!["data"]!.AsArray().Select(b => b!["id"]!.GetValue<string>()));
    }
}
