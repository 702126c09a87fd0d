using System.Text.Json.Nodes;
using Microsoft.Extensions.Time.Testing;
using SharpTune.Server;
using SharpTune.Tests.Server.FineTuning;
using static SharpTune.Tests.Server.Batches.BatchHarness;

namespace SharpTune.Tests.Server.Batches;

/// <summary>
/// The 24 h completion window, played on a fake clock (<see cref="ServerOptions.TimeProvider"/>). OpenAI's batch guide,
/// "Batch expiration" (platform.openai.com/docs/guides/batch#batch-expiration): "Batches that do not complete in time
/// eventually move to an expired state; unfinished requests within that batch are cancelled, and any responses to
/// completed requests are made available via the batch's output file", and each expired request is an error-file line
/// <c>{"id", "custom_id", "response": null, "error": {"code": "batch_expired", "message": "This request could not be
/// executed before the completion window expired."}}</c>.
/// </summary>
public sealed class BatchExpiryTests(JobsHarness harness) : IClassFixture<JobsHarness>
{
    private static readonly DateTimeOffset Start = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000);
    private const long Day = 24 * 3600;

    [ServerFact]
    public async Task ABatchPastItsWindowExpiresWithTheLinesItFinishedInItsOutputAndTheRestAsBatchExpiredErrors()
    {
        var clock = new FakeTimeProvider(Start);
        await using var server = await harness.StartAsync(harness.NewJobsDir(), server: o => o with { BatchRowsInFlight = 1, TimeProvider = clock });
        // One line at a time, and the next is started only once the last is recorded: so the clock moved while line N is
        // recorded is the clock line N + 1 starts at. Line 2 starts one second before the window ends, line 3 at its end.
        server.Batches!.Store.BeforeAppend = line => clock.Advance(line switch
        {
            1 => TimeSpan.FromSeconds(Day - 1),
            2 => TimeSpan.FromSeconds(1),
            _ => TimeSpan.Zero,
        });
        using var http = JobsHarness.Http(server);
        var lines = string.Join("\n", Enumerable.Range(1, 4).Select(i => Line($"line-{i}", "/v1/chat/completions", Chat($"Story {i}", 4))));
        var created = await CreateAsync(http, await UploadIdAsync(http, lines));
        Assert.Equal(Start.ToUnixTimeSeconds(), created["created_at"]!.GetValue<long>());
        Assert.Equal(Start.ToUnixTimeSeconds() + Day, created["expires_at"]!.GetValue<long>());

        var batch = await WaitForAsync(http, created["id"]!.GetValue<string>(), "expired", "completed", "failed", "cancelled");
        Assert.Equal("expired", batch["status"]!.GetValue<string>());
        var end = Start.ToUnixTimeSeconds() + Day;
        Assert.Equal(end, batch["expired_at"]!.GetValue<long>());
        Assert.Equal(end, batch["finalizing_at"]!.GetValue<long>());
        Assert.Equal(Start.ToUnixTimeSeconds(), batch["in_progress_at"]!.GetValue<long>());
        Assert.Equal(Start.ToUnixTimeSeconds() + Day, batch["expires_at"]!.GetValue<long>());   // unchanged by expiring
        Assert.Null(batch["completed_at"]);
        Assert.Equal("""{"total":4,"completed":2,"failed":2}""", batch["request_counts"]!.ToJsonString());

        var output = await LinesAsync(http, batch["output_file_id"]!.GetValue<string>());
        Assert.Equal(["line-1", "line-2"], output.Keys);
        Assert.All(output.Values, l => Assert.Equal(200, l["response"]!["status_code"]!.GetValue<int>()));
        var errors = await LinesAsync(http, batch["error_file_id"]!.GetValue<string>());
        Assert.Equal(["line-3", "line-4"], errors.Keys);
        foreach (var error in errors.Values)
        {
            Assert.StartsWith("batch_req_", error["id"]!.GetValue<string>());
            Assert.Null(error["response"]);
            Assert.True(error.ContainsKey("response"));
            Assert.Equal("""{"code":"batch_expired","message":"This request could not be executed before the completion window expired."}""",
                error["error"]!.ToJsonString());
        }
        // Usage counts the lines that ran, which OpenAI bills.
        Assert.Equal(output.Values.Sum(l => l["response"]!["body"]!["usage"]!["prompt_tokens"]!.GetValue<int>()),
            batch["usage"]!["input_tokens"]!.GetValue<int>());
    }

    [ServerFact]
    public async Task ALineStillRunningWhenTheWindowEndsIsCancelledAndListedAsExpired()
    {
        var clock = new FakeTimeProvider(Start);
        var recorded = 0;
        var open = false;
        var holding = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // Holds the engine once line 1 is recorded and line 2 has reached the engine's queue.
        bool Gate(EngineGateState state)
        {
            if (Volatile.Read(ref open) || Volatile.Read(ref recorded) == 0 || state.QueuedRequests == 0) return true;
            holding.TrySetResult();
            return false;
        }
        var server = await harness.StartAsync(harness.NewJobsDir(), server: o => o with { BatchRowsInFlight = 1, TimeProvider = clock, EngineGate = Gate });
        try
        {
            server.Batches!.Store.BeforeAppend = _ => Interlocked.Increment(ref recorded);
            using var http = JobsHarness.Http(server);
            var lines = string.Join("\n", Enumerable.Range(1, 3).Select(i => Line($"line-{i}", "/v1/chat/completions", Chat($"Story {i}", 4))));
            var id = (await CreateAsync(http, await UploadIdAsync(http, lines)))["id"]!.GetValue<string>();
            await holding.Task.WaitAsync(JobsHarness.HangGuard);

            clock.Advance(TimeSpan.FromSeconds(Day));   // line 2 is still queued on the held engine
            var batch = await WaitForAsync(http, id, "expired", "completed", "failed", "cancelled");
            Assert.Equal("expired", batch["status"]!.GetValue<string>());
            Assert.Equal(Start.ToUnixTimeSeconds() + Day, batch["expired_at"]!.GetValue<long>());
            Assert.Equal("""{"total":3,"completed":1,"failed":2}""", batch["request_counts"]!.ToJsonString());
            Assert.Equal(["line-1"], (await LinesAsync(http, batch["output_file_id"]!.GetValue<string>())).Keys);
            var errors = await LinesAsync(http, batch["error_file_id"]!.GetValue<string>());
            Assert.Equal(["line-2", "line-3"], errors.Keys);
            Assert.All(errors.Values, e => Assert.Equal("batch_expired", e["error"]!["code"]!.GetValue<string>()));
        }
        finally
        {
            Volatile.Write(ref open, true);
            await server.DisposeAsync();
        }
    }

    [ServerFact]
    public async Task ABatchWhoseLastLineIsRecordedAsTheWindowEndsCompletes()
    {
        var clock = new FakeTimeProvider(Start);
        await using var server = await harness.StartAsync(harness.NewJobsDir(), server: o => o with { BatchRowsInFlight = 1, TimeProvider = clock });
        // The window's timer fires while the last line is being recorded: every line finished, so nothing expired.
        server.Batches!.Store.BeforeAppend = line => clock.Advance(line == 2 ? TimeSpan.FromSeconds(Day) : TimeSpan.Zero);
        using var http = JobsHarness.Http(server);
        var lines = string.Join("\n", Enumerable.Range(1, 2).Select(i => Line($"line-{i}", "/v1/chat/completions", Chat($"Story {i}", 4))));
        var created = await CreateAsync(http, await UploadIdAsync(http, lines));

        var batch = await WaitForAsync(http, created["id"]!.GetValue<string>(), "expired", "completed", "failed", "cancelled");
        Assert.Equal("completed", batch["status"]!.GetValue<string>());
        Assert.Equal(Start.ToUnixTimeSeconds() + Day, batch["completed_at"]!.GetValue<long>());
        Assert.Null(batch["expired_at"]);
        Assert.Null(batch["error_file_id"]);
        Assert.Equal("""{"total":2,"completed":2,"failed":0}""", batch["request_counts"]!.ToJsonString());
    }

    [ServerFact]
    public async Task ABatchWhoseEveryLineWasRecordedBeforeAStopCompletesWhenResumedPastItsWindow()
    {
        var jobsDir = harness.NewJobsDir();
        var recorded = 0;
        var holding = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // Holds the engine once line 1 is recorded and line 2 has reached the engine's queue.
        bool Gate(EngineGateState state)
        {
            if (Volatile.Read(ref recorded) == 0 || state.QueuedRequests == 0) return true;
            holding.TrySetResult();
            return false;
        }
        string id;
        var server = await harness.StartAsync(jobsDir, server: o => o with { BatchRowsInFlight = 1, TimeProvider = new FakeTimeProvider(Start), EngineGate = Gate });
        try
        {
            server.Batches!.Store.BeforeAppend = _ => Interlocked.Increment(ref recorded);
            using var http = JobsHarness.Http(server);
            var lines = string.Join("\n", Enumerable.Range(1, 2).Select(i => Line($"line-{i}", "/v1/chat/completions", Chat("Story", 4))));
            id = (await CreateAsync(http, await UploadIdAsync(http, lines)))["id"]!.GetValue<string>();
            await holding.Task.WaitAsync(JobsHarness.HangGuard);
            // What a stop right after line 2 was recorded leaves: every line in the results, the batch still in progress.
            // Line 2 asked what line 1 asked, so line 1's answer stands for it.
            var answer = server.Batches.Store.Results(id)[1].DeepClone().AsObject();
            answer["id"] = "batch_req_" + Guid.NewGuid().ToString("N");
            answer["custom_id"] = "line-2";
            server.Batches.Store.AppendResult(id, 2, answer);
        }
        finally
        {
            await server.DisposeAsync();   // the held line 2 is cut off, not recorded again
        }

        // Restarted an hour after the window ended.
        await using var restarted = await harness.StartAsync(jobsDir, server: o => o with { TimeProvider = new FakeTimeProvider(Start.AddSeconds(Day + 3600)) });
        using var again = JobsHarness.Http(restarted);
        var batch = await WaitForAsync(again, id, "expired", "completed", "failed", "cancelled");
        Assert.Equal("completed", batch["status"]!.GetValue<string>());
        Assert.Equal(Start.ToUnixTimeSeconds() + Day + 3600, batch["completed_at"]!.GetValue<long>());
        Assert.Null(batch["error_file_id"]);
        Assert.Equal("""{"total":2,"completed":2,"failed":0}""", batch["request_counts"]!.ToJsonString());
        Assert.Equal(["line-1", "line-2"], (await LinesAsync(again, batch["output_file_id"]!.GetValue<string>())).Keys);
    }

    [ServerFact]
    public async Task TheClockEndsTheWindowEvenWhenItsTimerNeverFires()
    {
        var clock = new TimerlessClock { Now = Start };
        await using var server = await harness.StartAsync(harness.NewJobsDir(), server: o => o with { BatchRowsInFlight = 1, TimeProvider = clock });
        server.Batches!.Store.BeforeAppend = line => { if (line == 1) clock.Now = Start.AddSeconds(Day); };
        using var http = JobsHarness.Http(server);
        var lines = string.Join("\n", Enumerable.Range(1, 3).Select(i => Line($"line-{i}", "/v1/chat/completions", Chat($"Story {i}", 4))));
        var created = await CreateAsync(http, await UploadIdAsync(http, lines));

        var batch = await WaitForAsync(http, created["id"]!.GetValue<string>(), "expired", "completed", "failed", "cancelled");
        Assert.Equal("expired", batch["status"]!.GetValue<string>());
        Assert.Equal("""{"total":3,"completed":1,"failed":2}""", batch["request_counts"]!.ToJsonString());
        Assert.Equal(["line-2", "line-3"], (await LinesAsync(http, batch["error_file_id"]!.GetValue<string>())).Keys);
    }

    /// <summary>A clock set by hand whose timers never fire: a host whose timer is late, or lost.</summary>
    private sealed class TimerlessClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; }
        public override DateTimeOffset GetUtcNow() => Now;
        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) => new SilentTimer();

        private sealed class SilentTimer : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => true;
            public void Dispose() { }
            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
    }

    [ServerFact]
    public async Task ABatchWhoseExpiresAtLiesBeyondATimersLongestDelayStillRuns()
    {
        var jobsDir = harness.NewJobsDir();
        string id;
        await using (var server = await harness.StartAsync(jobsDir, server: o => o with { TimeProvider = new FakeTimeProvider(Start), EngineGate = _ => false }))
        {
            using var http = JobsHarness.Http(server);
            id = (await CreateAsync(http, await UploadIdAsync(http, Line("a", "/v1/chat/completions", Chat("Hi", 2)))))["id"]!.GetValue<string>();
            await WaitForAsync(http, id, "in_progress");
        }
        // A record whose window ends 100 days out (edited, or stamped by a clock since set back): more than the
        // 2^32 - 2 ms (about 49.7 days) a timer can wait, which CancellationTokenSource refuses.
        var recordPath = Path.Combine(jobsDir, "batches", id + ".json");
        var record = JsonNode.Parse(File.ReadAllText(recordPath))!.AsObject();
        record["expires_at"] = Start.ToUnixTimeSeconds() + 100 * Day;
        File.WriteAllText(recordPath, record.ToJsonString());

        await using var restarted = await harness.StartAsync(jobsDir, server: o => o with { TimeProvider = new FakeTimeProvider(Start) });
        using var again = JobsHarness.Http(restarted);
        var batch = await WaitForAsync(again, id, "expired", "completed", "failed", "cancelled");
        Assert.Equal("completed", batch["status"]!.GetValue<string>());
        Assert.Equal(1, batch["request_counts"]!["completed"]!.GetValue<int>());
    }

    [ServerFact]
    public async Task ExpiresAtIsTwentyFourHoursAfterEachBatchsCreationOnTheServersClock()
    {
        var clock = new FakeTimeProvider(Start);
        var open = false;   // the engine holds until both batches exist, so both finish on the advanced clock
        await using var server = await harness.StartAsync(harness.NewJobsDir(),
            server: o => o with { TimeProvider = clock, EngineGate = _ => Volatile.Read(ref open) });
        using var http = JobsHarness.Http(server);
        var file = await UploadIdAsync(http, Line("a", "/v1/chat/completions", Chat("Hi", 2)));
        var first = await CreateAsync(http, file);
        clock.Advance(TimeSpan.FromMinutes(90));
        var second = await CreateAsync(http, file);
        Volatile.Write(ref open, true);

        Assert.Equal(Start.ToUnixTimeSeconds() + Day, first["expires_at"]!.GetValue<long>());
        Assert.Equal(Start.ToUnixTimeSeconds() + 5400, second["created_at"]!.GetValue<long>());
        Assert.Equal(Start.ToUnixTimeSeconds() + 5400 + Day, second["expires_at"]!.GetValue<long>());
        // Both run well inside their windows and complete, stamped by the same clock.
        foreach (var id in new[] { first, second }.Select(b => b["id"]!.GetValue<string>()))
        {
            var done = await WaitForAsync(http, id, "completed", "expired", "failed", "cancelled");
            Assert.Equal("completed", done["status"]!.GetValue<string>());
            Assert.Equal(Start.ToUnixTimeSeconds() + 5400, done["completed_at"]!.GetValue<long>());
            Assert.Null(done["expired_at"]);
        }
    }
}
