using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using SharpTune.Server;
using SharpTune.Tests.Server.FineTuning;
using static SharpTune.Tests.Server.Batches.BatchHarness;

namespace SharpTune.Tests.Server.Batches;

/// <summary>
/// Cancelling, resuming after a restart, and sharing the engine with live traffic, each held at an exact point by the
/// engine gate (<see cref="ServerOptions.EngineGate"/>) so the outcome does not depend on the machine's speed.
/// </summary>
public sealed class BatchLifecycleTests(JobsHarness harness) : IClassFixture<JobsHarness>
{
    /// <summary>
    /// With one batch row in flight, holds the engine once the first line has finished and the next is queued: so exactly
    /// one line is recorded while the batch is held.
    /// </summary>
    private sealed class SecondLineGate
    {
        private bool decoded;
        public volatile bool Open;
        public TaskCompletionSource Holding { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Waits until the gate holds; fails at once if the batch ends without ever being held.</summary>
        public async Task HeldAsync(HttpClient http, string batchId)
        {
            var ended = WaitForAsync(http, batchId, "completed", "failed", "cancelled", "expired");
            await Task.WhenAny(Holding.Task, ended).WaitAsync(JobsHarness.HangGuard);
            Assert.True(Holding.Task.IsCompleted, $"batch {batchId} ended without the engine ever holding its second line");
        }

        public bool Pass(EngineGateState state)
        {
            if (Open) return true;
            if (state.LiveRows > 0) decoded = true;
            if (!decoded || state.LiveRows > 0 || state.QueuedRequests == 0) return true;
            Holding.TrySetResult();
            return false;
        }
    }

    private static string ThreeLines() => string.Join("\n", new[] { "Once upon a time", "Lily saw a cat", "Tom had a ball" }
        .Select((prompt, i) => Line($"line-{i + 1}", "/v1/chat/completions", Chat(prompt, 6)))) + "\n";

    [ServerFact]
    public async Task CancellingStopsTheBatchAndKeepsTheLinesItFinished()
    {
        var gate = new SecondLineGate();
        var server = await harness.StartAsync(harness.NewJobsDir(), server: o => o with { BatchRowsInFlight = 1, EngineGate = gate.Pass });
        try
        {
            using var http = JobsHarness.Http(server);
            var id = (await CreateAsync(http, await UploadIdAsync(http, ThreeLines())))["id"]!.GetValue<string>();
            await gate.HeldAsync(http, id);

            using var cancel = await http.PostAsync($"/v1/batches/{id}/cancel", null);
            var cancelling = JsonNode.Parse(await cancel.Content.ReadAsStringAsync())!;
            Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
            Assert.Equal("cancelling", cancelling["status"]!.GetValue<string>());
            Assert.NotNull(cancelling["cancelling_at"]);

            var cancelled = await WaitForAsync(http, id, "cancelled", "completed", "failed");
            Assert.Equal("cancelled", cancelled["status"]!.GetValue<string>());
            Assert.NotNull(cancelled["cancelled_at"]);
            Assert.Null(cancelled["completed_at"]);
            Assert.Equal("""{"total":3,"completed":1,"failed":0}""", cancelled["request_counts"]!.ToJsonString());
            Assert.Null(cancelled["error_file_id"]);   // the line cut off is not an error, it never ran
            Assert.Equal(["line-1"], (await LinesAsync(http, cancelled["output_file_id"]!.GetValue<string>())).Keys);

            using var again = await http.PostAsync($"/v1/batches/{id}/cancel", null);
            Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await http.PostAsync("/v1/batches/batch_000000000000000000000000/cancel", null)).StatusCode);
        }
        finally
        {
            gate.Open = true;
            await server.DisposeAsync();
        }
    }

    [ServerFact]
    public async Task AServerStoppedMidBatchResumesItWithoutRunningFinishedLinesAgain()
    {
        var jobsDir = harness.NewJobsDir();
        var gate = new SecondLineGate();
        string id, firstRequestId;
        var server = await harness.StartAsync(jobsDir, server: o => o with { BatchRowsInFlight = 1, EngineGate = gate.Pass });
        try
        {
            using var http = JobsHarness.Http(server);
            id = (await CreateAsync(http, await UploadIdAsync(http, ThreeLines())))["id"]!.GetValue<string>();
            await gate.HeldAsync(http, id);
            var held = await GetAsync(http, id);
            Assert.Equal("in_progress", held["status"]!.GetValue<string>());
            Assert.Equal(1, held["request_counts"]!["completed"]!.GetValue<int>());
            // The finished line as recorded before the stop: its request id shows whether it ran again.
            var recorded = File.ReadAllLines(Path.Combine(jobsDir, "batches", id + ".results.jsonl")).Single();
            firstRequestId = JsonNode.Parse(recorded)!["output"]!["response"]!["request_id"]!.GetValue<string>();
        }
        finally
        {
            await server.DisposeAsync();   // the gate still holds line 2: the stop cuts it off
        }
        // What a crash between recording line 1 and counting it leaves: the line is in the results, not in the record.
        var recordPath = Path.Combine(jobsDir, "batches", id + ".json");
        var record = JsonNode.Parse(File.ReadAllText(recordPath))!.AsObject();
        record["completed"] = 0;
        record["input_tokens"] = 0;
        record["output_tokens"] = 0;
        File.WriteAllText(recordPath, record.ToJsonString());

        await using var restarted = await harness.StartAsync(jobsDir);
        using var again = JobsHarness.Http(restarted);
        var batch = await WaitForAsync(again, id, "completed", "failed", "cancelled");
        Assert.Equal("completed", batch["status"]!.GetValue<string>());
        Assert.Equal("""{"total":3,"completed":3,"failed":0}""", batch["request_counts"]!.ToJsonString());
        var output = await LinesAsync(again, batch["output_file_id"]!.GetValue<string>());
        Assert.Equal(["line-1", "line-2", "line-3"], output.Keys);
        Assert.Equal(firstRequestId, output["line-1"]["response"]!["request_id"]!.GetValue<string>());
        // Usage is summed from every recorded line at the end, line 1 included.
        int Sum(string field) => output.Values.Sum(l => l["response"]!["body"]!["usage"]![field]!.GetValue<int>());
        Assert.Equal(Sum("prompt_tokens"), batch["usage"]!["input_tokens"]!.GetValue<int>());
        Assert.Equal(Sum("completion_tokens"), batch["usage"]!["output_tokens"]!.GetValue<int>());
        var bodies = ThreeLines().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToArray();
        for (var i = 0; i < 3; i++)
        {
            var (_, live) = await LiveAsync(again, "/v1/chat/completions", bodies[i]["body"]!.AsObject());
            Assert.Equal(Comparable(live), Comparable(output[$"line-{i + 1}"]["response"]!["body"]));
        }
    }

    [ServerFact]
    public async Task BatchRowsStayWithinTheirShareAndALiveRequestJoinsTheirDecodeSteps()
    {
        var liveRows = new List<int>();
        var heldForLive = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var liveQueued = false;
        bool Gate(EngineGateState state)
        {
            lock (liveRows) liveRows.Add(state.LiveRows);
            if (liveQueued) return true;
            if (state.LiveRows == 0) return true;
            // A batch row is decoding: hold it until the live request is queued, so the two must share the next steps.
            if (state.QueuedRequests == 0)
            {
                heldForLive.TrySetResult();
                return false;
            }
            liveQueued = true;
            return true;
        }
        await using var server = await harness.StartAsync(harness.NewJobsDir(), server: o => o with { MaxBatchSize = 8, BatchRowsInFlight = 1, EngineGate = Gate });
        using var http = JobsHarness.Http(server);
        var lines = string.Join("\n", Enumerable.Range(0, 4).Select(i => Line($"l{i}", "/v1/chat/completions", Chat($"Story number {i}", 24))));
        var id = (await CreateAsync(http, await UploadIdAsync(http, lines)))["id"]!.GetValue<string>();
        await Task.WhenAny(heldForLive.Task, WaitForAsync(http, id, "completed", "failed")).WaitAsync(JobsHarness.HangGuard);
        Assert.True(heldForLive.Task.IsCompleted, "the batch ended without a batch row decoding alone");

        var (status, _) = await LiveAsync(http, "/v1/chat/completions", Chat("Once upon a time", 8));
        Assert.Equal(200, status);
        var batch = await WaitForAsync(http, id, "completed", "failed");
        Assert.Equal(4, batch["request_counts"]!["completed"]!.GetValue<int>());
        lock (liveRows)
        {
            Assert.Contains(2, liveRows);        // one batch row and the live one decoded in the same steps
            Assert.True(liveRows.Max() <= 2, $"at most one batch row besides the live request, saw {liveRows.Max()} rows");
        }
    }

    [ServerFact]
    public async Task AStoreFailureMidBatchStopsItAndItFailsWithTheLinesItFinishedInItsOutput()
    {
        var jobsDir = harness.NewJobsDir();
        await using var server = await harness.StartAsync(jobsDir, server: o => o with { BatchRowsInFlight = 1 });
        var appended = new List<int>();
        server.Batches!.Store.BeforeAppend = line =>
        {
            lock (appended) appended.Add(line);
            if (line == 2) throw new IOException("No space left on device");
        };
        using var http = JobsHarness.Http(server);
        var lines = string.Join("\n", Enumerable.Range(1, 4).Select(i => Line($"line-{i}", "/v1/chat/completions", Chat($"Story {i}", 4))));
        var id = (await CreateAsync(http, await UploadIdAsync(http, lines)))["id"]!.GetValue<string>();

        var batch = await WaitForAsync(http, id, "completed", "failed", "cancelled");
        Assert.Equal("failed", batch["status"]!.GetValue<string>());
        Assert.NotNull(batch["failed_at"]);
        var error = batch["errors"]!["data"]![0]!;
        Assert.Equal("server_error", error["code"]!.GetValue<string>());
        Assert.Contains("No space left on device", error["message"]!.GetValue<string>());
        lock (appended) Assert.Equal([1, 2], appended);   // no line was started once the store failed
        // The line that finished is in the output file, as OpenAI keeps a failed batch's completed lines.
        Assert.Equal("""{"total":4,"completed":1,"failed":0}""", batch["request_counts"]!.ToJsonString());
        Assert.Equal(["line-1"], (await LinesAsync(http, batch["output_file_id"]!.GetValue<string>())).Keys);
        Assert.Null(batch["error_file_id"]);
        Assert.False(File.Exists(Path.Combine(jobsDir, "batches", id + ".results.jsonl")));
    }

    [ServerFact]
    public async Task ABatchWhoseInputFileIsDeletedWhileStoppedFailsWithTheLinesItFinishedInItsOutput()
    {
        var jobsDir = harness.NewJobsDir();
        var gate = new SecondLineGate();
        string id, inputId;
        var server = await harness.StartAsync(jobsDir, server: o => o with { BatchRowsInFlight = 1, EngineGate = gate.Pass });
        try
        {
            using var http = JobsHarness.Http(server);
            inputId = await UploadIdAsync(http, ThreeLines());
            id = (await CreateAsync(http, inputId))["id"]!.GetValue<string>();
            await gate.HeldAsync(http, id);
        }
        finally
        {
            await server.DisposeAsync();   // line 1 recorded, line 2 cut off
        }
        foreach (var input in Directory.EnumerateFiles(jobsDir, inputId + ".*", SearchOption.AllDirectories)) File.Delete(input);

        await using var restarted = await harness.StartAsync(jobsDir);
        using var again = JobsHarness.Http(restarted);
        var batch = await WaitForAsync(again, id, "completed", "failed", "cancelled");
        Assert.Equal("failed", batch["status"]!.GetValue<string>());
        Assert.Equal("file_not_found", batch["errors"]!["data"]![0]!["code"]!.GetValue<string>());
        Assert.Equal(["line-1"], (await LinesAsync(again, batch["output_file_id"]!.GetValue<string>())).Keys);
        Assert.Equal(1, batch["request_counts"]!["completed"]!.GetValue<int>());
        Assert.False(File.Exists(Path.Combine(jobsDir, "batches", id + ".results.jsonl")));
    }

    [ServerFact]
    public async Task AZeroLengthRecordNeitherStopsTheRunnerNorBreaksTheList()
    {
        var jobsDir = harness.NewJobsDir();
        var broken = Path.Combine(jobsDir, "batches", "batch_" + new string('0', 24) + ".json");
        Directory.CreateDirectory(Path.GetDirectoryName(broken)!);
        File.WriteAllBytes(broken, []);
        await using var server = await harness.StartAsync(jobsDir);
        using var http = JobsHarness.Http(server);

        var id = (await CreateAsync(http, await UploadIdAsync(http, Line("a", "/v1/chat/completions", Chat("Hi", 2)))))["id"]!.GetValue<string>();
        Assert.Equal("completed", (await WaitForAsync(http, id, "completed", "failed"))["status"]!.GetValue<string>());
        using var list = await http.GetAsync("/v1/batches");
        Assert.Equal(HttpStatusCode.OK, list.StatusCode);
        Assert.Equal([id], JsonNode.Parse(await list.Content.ReadAsStringAsync())!["data"]!.AsArray().Select(b => b!["id"]!.GetValue<string>()));
        Assert.True(File.Exists(broken + ".corrupt"));
    }

    [ServerFact]
    public async Task UnfinishedBatchesBeyondTheJobsLimitAreRefusedWith429()
    {
        var open = false;
        var server = await harness.StartAsync(harness.NewJobsDir(), o => o with { MaxQueuedJobs = 1 }, server: o => o with { EngineGate = _ => Volatile.Read(ref open) });
        try
        {
            using var http = JobsHarness.Http(server);
            var fileId = await UploadIdAsync(http, Line("a", "/v1/chat/completions", Chat("Hi", 2)));
            var first = (await CreateAsync(http, fileId))["id"]!.GetValue<string>();
            using var refused = await http.PostAsJsonAsync("/v1/batches", new JsonObject
            {
                ["input_file_id"] = fileId, ["endpoint"] = "/v1/chat/completions", ["completion_window"] = "24h",
            });
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("too_many_batches", error["code"]!.GetValue<string>());
            Assert.Equal("rate_limit_error", error["type"]!.GetValue<string>());

            Volatile.Write(ref open, true);
            await WaitForAsync(http, first, "completed");
            Assert.Equal("validating", (await CreateAsync(http, fileId))["status"]!.GetValue<string>());
        }
        finally
        {
            Volatile.Write(ref open, true);
            await server.DisposeAsync();
        }
    }

    [ServerFact]
    public async Task ATextCompletionLineHoldsARowForEachOfItsPrompts()
    {
        var maxRows = 0;
        bool Gate(EngineGateState state)
        {
            InterlockedMax(ref maxRows, state.LiveRows);
            return true;
        }
        await using var server = await harness.StartAsync(harness.NewJobsDir(), server: o => o with { MaxBatchSize = 8, BatchRowsInFlight = 2, EngineGate = Gate });
        using var http = JobsHarness.Http(server);
        var lines = string.Join("\n", Enumerable.Range(0, 4).Select(i => Line($"l{i}", "/v1/completions", new JsonObject
        {
            ["model"] = JobsHarness.BaseName, ["prompt"] = new JsonArray($"Once {i}", $"Lily {i}"), ["max_tokens"] = 12, ["temperature"] = 0,
        })));
        var id = (await CreateAsync(http, await UploadIdAsync(http, lines), "/v1/completions"))["id"]!.GetValue<string>();
        var batch = await WaitForAsync(http, id, "completed", "failed");
        Assert.Equal(4, batch["request_counts"]!["completed"]!.GetValue<int>());
        Assert.Equal(2, Volatile.Read(ref maxRows));   // one line's two prompts at a time, never two lines' four
    }

    private static void InterlockedMax(ref int target, int value)
    {
        for (var seen = Volatile.Read(ref target); value > seen; seen = Volatile.Read(ref target))
            if (Interlocked.CompareExchange(ref target, value, seen) == seen) return;
    }
}
