using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Time.Testing;
using SharpTune.Server;

namespace SharpTune.Tests.Server.FineTuning;

/// <summary><c>/v1/files</c>: every line validated before anything is stored, ids never paths, keys scoped when asked.</summary>
public sealed class FileUploadTests(JobsHarness harness) : IClassFixture<JobsHarness>
{
    private const string Good = """{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello","weight":1}]}""";

    // OpenAI's tool-calling line: tools, an assistant message with tool_calls and no content, the tool's result, the answer.
    private const string ToolLine = """{"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"21"},{"role":"assistant","content":"21 °C."}]}""";

    // The same conversation in OpenAI's legacy form: functions, function_call and a function-role result.
    private const string LegacyFunctionLine = """{"functions":[{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}],"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","function_call":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}},{"role":"function","name":"get_weather","content":"21"},{"role":"assistant","content":"21 °C."}]}""";

    public static TheoryData<string, string, string> BadFiles => new()
    {
        { "tool result answering no call", ToolLine + "\n" + ToolLine.Replace("\"tool_call_id\":\"call_1\"", "\"tool_call_id\":\"call_9\""), "line 2: field 'messages[2].tool_call_id': no earlier assistant message made a tool call with id 'call_9'" },
        { "call to a function not in tools", ToolLine + "\n" + ToolLine.Replace("\"name\":\"get_weather\",\"arguments\"", "\"name\":\"get_time\",\"arguments\""), "line 2: field 'messages[1].tool_calls[0].function.name': 'get_time' is not one of this example's tools" },
        { "arguments that are not JSON", ToolLine.Replace("\"arguments\":\"{", "\"arguments\":\"{{"), "line 1: field 'messages[1].tool_calls[0].function.arguments'" },
        { "malformed JSON", Good + "\n{\"messages\": [\n", "line 2:" },
        { "wrong role", Good + "\n" + """{"messages":[{"role":"user","content":"Hi"},{"role":"robot","content":"Beep"}]}""", "line 2: field 'messages[1].role': unknown role 'robot'" },
        { "no assistant message", Good + "\n" + Good + "\n" + """{"messages":[{"role":"user","content":"Hi"}]}""", "line 3:" },
        { "bad weight", Good + "\n" + """{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Yo","weight":2}]}""", "line 2: field 'messages[1].weight'" },
        { "preference missing a side", Pair(true) + "\n" + Pair(false), "line 2: field 'non_preferred_output': missing" },
        { "preference missing the preferred side", Pair(true) + "\n" + Pair(true).Replace("\"preferred_output\"", "\"other\""), "line 2: field 'preferred_output': missing" },
        { "mixed formats", Good + "\n" + """{"prompt":"a","completion":"b"}""", "line 2:" },
        { "not an object", Good + "\n[1, 2]", "line 2: expected a JSON object" },
        { "a key twice", Good + "\n" + """{"messages":[{"role":"user","content":"Hi","content":"Hello"},{"role":"assistant","content":"Yo"}]}""", "line 2: the key 'content' appears more than once in the object at $.messages[0]" },
        // The trainer reads ShareGPT rows from local files, but OpenAI's fine-tuning API takes only its own formats.
        { "ShareGPT chat", Good + "\n" + """{"conversations":[{"from":"human","value":"Hi"},{"from":"gpt","value":"Hello"}]}""", "line 2: field 'conversations': ShareGPT rows are not an OpenAI fine-tuning format" },
        { "ShareGPT preference", """{"conversations":[{"from":"human","value":"Hi"}],"chosen":{"from":"gpt","value":"Hello"},"rejected":{"from":"gpt","value":"Go"}}""", "line 1: field 'conversations': ShareGPT rows are not an OpenAI fine-tuning format" },
    };

    [ServerTheory]
    [MemberData(nameof(BadFiles))]
    public async Task ABadLineIsRefusedWithItsNumberAndNothingIsStored(string why, string content, string expected)
    {
        var jobsDir = harness.NewJobsDir();
        await using var server = await harness.StartAsync(jobsDir);
        using var http = JobsHarness.Http(server);
        await AssertRefusedAsync(http, jobsDir, Encoding.UTF8.GetBytes(content), expected, why);
    }

    [ServerFact]
    public async Task ToolCallingLinesInTheCurrentAndLegacyFormsAreAccepted()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        var upload = await JobsHarness.UploadRawAsync(http, Encoding.UTF8.GetBytes(ToolLine + "\n" + LegacyFunctionLine + "\n"), "tools.jsonl");
        Assert.True(upload.StatusCode == HttpStatusCode.OK, await upload.Content.ReadAsStringAsync());
    }

    [ServerFact]
    public async Task EmptyAndOversizedFilesAreRefusedWithALineNumberAndNothingIsStored()
    {
        var jobsDir = harness.NewJobsDir();
        await using var server = await harness.StartAsync(jobsDir);   // upload limit 32 KiB
        using var http = JobsHarness.Http(server);
        await AssertRefusedAsync(http, jobsDir, [], "line 1: the file is empty", "empty");
        var lines = string.Join("\n", Enumerable.Repeat(Good, 40 * 1024 / Good.Length));
        var limitLine = 32 * 1024 / (Good.Length + 1) + 1;
        await AssertRefusedAsync(http, jobsDir, Encoding.UTF8.GetBytes(lines), $"line {limitLine}: the file is larger than this server's upload limit of 32768 bytes", "oversized");
    }

    [ServerFact]
    public async Task AnUploadedFileIsListedReadAndDeletedAndItsNameNeverBecomesAPath()
    {
        var jobsDir = harness.NewJobsDir();
        await using var server = await harness.StartAsync(jobsDir);
        using var http = JobsHarness.Http(server);
        var content = Good + "\n" + Good + "\n";
        var upload = await JobsHarness.UploadRawAsync(http, Encoding.UTF8.GetBytes(content), "../../../etc/evil.jsonl");
        Assert.Equal(HttpStatusCode.OK, upload.StatusCode);
        var file = JsonNode.Parse(await upload.Content.ReadAsStringAsync())!;
        var id = file["id"]!.GetValue<string>();
        Assert.Matches("^file-[0-9a-f]{24}$", id);
        Assert.Equal("evil.jsonl", file["filename"]!.GetValue<string>());
        Assert.Equal("fine-tune", file["purpose"]!.GetValue<string>());
        Assert.Equal(Encoding.UTF8.GetByteCount(content), file["bytes"]!.GetValue<long>());
        Assert.Equal([$"{id}.jsonl"], Directory.GetFiles(Path.Combine(jobsDir, "files")).Select(Path.GetFileName));

        Assert.Equal(id, JsonNode.Parse(await http.GetStringAsync("/v1/files"))!["data"]![0]!["id"]!.GetValue<string>());
        Assert.Equal(id, JsonNode.Parse(await http.GetStringAsync($"/v1/files/{id}"))!["id"]!.GetValue<string>());
        Assert.Equal(content, await http.GetStringAsync($"/v1/files/{id}/content"));
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/v1/files/..%2F..%2Fjobs.db/content")).StatusCode);

        var deleted = JsonNode.Parse(await (await http.DeleteAsync($"/v1/files/{id}")).Content.ReadAsStringAsync())!;
        Assert.True(deleted["deleted"]!.GetValue<bool>());
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/v1/files/{id}")).StatusCode);
        Assert.Empty(Directory.GetFiles(Path.Combine(jobsDir, "files")));
    }

    [ServerFact]
    public async Task FilesListNewestFirstOrOldestFirstWithCursorPages()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
            ids.Add(JsonNode.Parse(await (await JobsHarness.UploadRawAsync(http, Encoding.UTF8.GetBytes(Good + "\n"))).Content.ReadAsStringAsync())!["id"]!.GetValue<string>());
        async Task<(string[] Ids, bool HasMore)> List(string query)
        {
            var page = JsonNode.Parse(await http.GetStringAsync("/v1/files" + query))!;
            return (page["data"]!.AsArray().Select(f => f!["id"]!.GetValue<string>()).ToArray(), page["has_more"]!.GetValue<bool>());
        }
        Assert.Equal([ids[2], ids[1], ids[0]], (await List("")).Ids);
        Assert.Equal([ids[2], ids[1], ids[0]], (await List("?order=desc")).Ids);
        Assert.Equal([ids[0], ids[1], ids[2]], (await List("?order=asc")).Ids);
        var first = await List("?order=asc&limit=1");
        Assert.Equal([ids[0]], first.Ids);
        Assert.True(first.HasMore);
        var rest = await List($"?order=asc&after={ids[0]}");
        Assert.Equal([ids[1], ids[2]], rest.Ids);
        Assert.False(rest.HasMore);
        Assert.Equal(HttpStatusCode.BadRequest, (await http.GetAsync("/v1/files?order=newest")).StatusCode);
    }

    [ServerFact]
    public async Task AFileUploadedWithExpiresAfterCarriesExpiresAtAndIsGoneOnceItPasses()
    {
        // The server's clock (ServerOptions.TimeProvider, which batches read too) stamps files and ends them.
        var clock = new FakeTimeProvider(DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
        await using var server = await harness.StartAsync(harness.NewJobsDir(), server: o => o with { TimeProvider = clock });
        using var http = JobsHarness.Http(server);
        // The fields as the official SDKs send OpenAI's expires_after object in a multipart upload.
        async Task<(HttpStatusCode Status, JsonNode Body)> Upload(string anchor, string seconds)
        {
            using var form = new MultipartFormDataContent
            {
                { new StringContent("fine-tune"), "purpose" },
                { new StringContent(anchor), "expires_after[anchor]" },
                { new StringContent(seconds), "expires_after[seconds]" },
                { new ByteArrayContent(Encoding.UTF8.GetBytes(Good + "\n")), "file", "train.jsonl" },
            };
            using var response = await http.PostAsync("/v1/files", form);
            return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
        }

        var (status, file) = await Upload("created_at", "3600");
        Assert.Equal(HttpStatusCode.OK, status);
        var id = (string)file["id"]!;
        Assert.Equal(1_800_000_000L, (long)file["created_at"]!);
        Assert.Equal(1_800_000_000L + 3600, (long)file["expires_at"]!);
        Assert.Equal((long)file["expires_at"]!, (long)JsonNode.Parse(await http.GetStringAsync($"/v1/files/{id}"))!["expires_at"]!);
        // A file uploaded without it does not expire and has no expires_at, as OpenAI's file object.
        var plain = JsonNode.Parse(await (await JobsHarness.UploadRawAsync(http, Encoding.UTF8.GetBytes(Good + "\n"))).Content.ReadAsStringAsync())!;
        Assert.False(plain.AsObject().ContainsKey("expires_at"));

        foreach (var (anchor, seconds, param) in new[]
        {
            ("created_at", "3599", "expires_after.seconds"), ("created_at", "2592001", "expires_after.seconds"),
            ("created_at", "soon", "expires_after.seconds"), ("last_active_at", "3600", "expires_after.anchor"),
        })
        {
            var (refused, error) = await Upload(anchor, seconds);
            Assert.True((HttpStatusCode.BadRequest, param) == (refused, (string?)error["error"]?["param"]), $"{anchor} {seconds}: {refused} {error}");
        }

        // Still there at the last second of its hour; once the hour has passed it is deleted: 404, unlisted.
        var store = server.FineTuning!.Store;
        clock.Advance(TimeSpan.FromSeconds(3599));
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"/v1/files/{id}")).StatusCode);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/v1/files/{id}/content")).StatusCode);
        var listed = JsonNode.Parse(await http.GetStringAsync("/v1/files"))!["data"]!.AsArray().Select(f => (string)f!["id"]!).ToArray();
        Assert.Equal([(string)plain["id"]!], listed);
        Assert.Null(store.GetFile(id));
    }

    [ServerFact]
    public async Task APurposeFilterPagesOverTheMatchingFilesOnly()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        async Task<string> Upload() =>
            JsonNode.Parse(await (await JobsHarness.UploadRawAsync(http, Encoding.UTF8.GetBytes(JobsHarness.CompletionData(4)))).Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
        var older = await Upload();
        using var created = await http.PostAsync("/v1/fine_tuning/jobs", new StringContent(new JsonObject
        {
            ["model"] = JobsHarness.BaseName, ["training_file"] = older, ["hyperparameters"] = new JsonObject { ["n_epochs"] = 1, ["batch_size"] = 4 },
        }.ToJsonString(), Encoding.UTF8, "application/json"));
        var job = await JobsHarness.WaitForStatusAsync(http, (string)JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!,
            JobsHarness.HangGuard, "succeeded", "failed");
        var results = (string)job["result_files"]![0]!;
        var newer = await Upload();
        async Task<(string[] Ids, bool HasMore)> List(string query)
        {
            var page = JsonNode.Parse(await http.GetStringAsync("/v1/files" + query))!;
            return (page["data"]!.AsArray().Select(f => f!["id"]!.GetValue<string>()).ToArray(), page["has_more"]!.GetValue<bool>());
        }

        // Newest first the files are newer, results, older. A page of one fine-tune file must skip the results file
        // between them: an empty page with has_more ends the SDKs' auto-pagination (they continue after the last item).
        var first = await List("?purpose=fine-tune&limit=1");
        Assert.Equal([newer], first.Ids);
        Assert.True(first.HasMore);
        var second = await List($"?purpose=fine-tune&limit=1&after={newer}");
        Assert.Equal([older], second.Ids);
        Assert.False(second.HasMore);
        var onlyResults = await List("?purpose=fine-tune-results&limit=1");
        Assert.Equal([results], onlyResults.Ids);
        Assert.False(onlyResults.HasMore);
        Assert.Equal([older, newer], (await List("?purpose=fine-tune&order=asc")).Ids);
    }

    [ServerFact]
    public async Task WithScopedKeysAnotherKeyCannotSeeOrUseAFileAndNoKeyIsRefused()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir(), o => o with { ScopedKeys = true });
        using var owner = JobsHarness.Http(server);
        using var other = JobsHarness.Http(server, JobsHarness.OtherKey);
        var upload = await JobsHarness.UploadRawAsync(owner, Encoding.UTF8.GetBytes(JobsHarness.CompletionData(2)));
        var id = JsonNode.Parse(await upload.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();

        Assert.Equal(HttpStatusCode.OK, (await owner.GetAsync($"/v1/files/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/v1/files/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/v1/files/{id}/content")).StatusCode);
        Assert.Empty(JsonNode.Parse(await other.GetStringAsync("/v1/files"))!["data"]!.AsArray());
        var job = await other.PostAsync("/v1/fine_tuning/jobs", new StringContent(
            new JsonObject { ["model"] = JobsHarness.BaseName, ["training_file"] = id }.ToJsonString(), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, job.StatusCode);
        Assert.Equal("training_file", JsonNode.Parse(await job.Content.ReadAsStringAsync())!["error"]!["param"]!.GetValue<string>());

        // Chat data on a base model without a chat template is refused when the job is created, not after it starts.
        var chat = await JobsHarness.UploadRawAsync(owner, Encoding.UTF8.GetBytes(Good + "\n"));
        var chatJob = await owner.PostAsync("/v1/fine_tuning/jobs", new StringContent(new JsonObject
        {
            ["model"] = JobsHarness.BaseName,
            ["training_file"] = JsonNode.Parse(await chat.Content.ReadAsStringAsync())!["id"]!.GetValue<string>(),
        }.ToJsonString(), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, chatJob.StatusCode);
        Assert.Contains("no chat template", await chatJob.Content.ReadAsStringAsync());

        using var anonymous = new HttpClient { BaseAddress = server.Url };
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/files")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/v1/fine_tuning/jobs")).StatusCode);
    }

    private static async Task AssertRefusedAsync(HttpClient http, string jobsDir, byte[] content, string expected, string why)
    {
        var response = await JobsHarness.UploadRawAsync(http, content);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{why}: {response.StatusCode} {body}");
        var message = JsonNode.Parse(body)!["error"]!["message"]!.GetValue<string>();
        Assert.StartsWith(expected, message);
        Assert.Empty(JsonNode.Parse(await http.GetStringAsync("/v1/files"))!["data"]!.AsArray());
        Assert.Empty(Directory.GetFiles(Path.Combine(jobsDir, "files")));
    }

    private static string Pair(bool bothSides)
    {
        var pair = new JsonObject
        {
            ["input"] = new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Story" }) },
            ["preferred_output"] = new JsonArray(new JsonObject { ["role"] = "assistant", ["content"] = "Lily was happy." }),
        };
        if (bothSides) pair["non_preferred_output"] = new JsonArray(new JsonObject { ["role"] = "assistant", ["content"] = "Tom was sad." });
        return pair.ToJsonString();
    }
}
