using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.Jobs;
using SharpTune.Tests.Support;
using Xunit.Abstractions;

namespace SharpTune.Tests.Server.FineTuning;

/// <summary>
/// The service on many workers, for real: a PostgreSQL started for the test, a server that schedules and serves but does
/// not train, and two <c>sharptune worker</c> processes sharing the queue and an artifacts folder.
/// </summary>
public sealed class SharedQueueTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(3);
    private readonly JobsHarness harness = new();
    private readonly List<Process> workers = [];

    [PostgresFact]
    public async Task TwoWorkersRunEachJobOnceAndTheSurvivorOfAKillResumesItsJobFromTheLastCheckpoint()
    {
        if (!ServerFixture.Available) return;
        using var postgres = new PostgresServer();
        var url = postgres.Url(postgres.CreateDatabase());
        var artifacts = harness.NewJobsDir();
        await using var server = await harness.StartAsync(artifacts, o => o with { JobsDatabase = url, CheckpointEvery = 4 });
        Assert.False(server.FineTuning!.TrainsJobs);
        var a = StartWorker(url, artifacts, "worker-a");
        var b = StartWorker(url, artifacts, "worker-b");
        using var http = JobsHarness.Http(server);

        // The long job first, so one worker is busy with it while the other takes the short ones.
        var longJob = await CreateJobAsync(http, lines: 16, epochs: 4);
        var shortJobs = new List<string>();
        for (var i = 0; i < 3; i++) shortJobs.Add(await CreateJobAsync(http, lines: 4, epochs: 1));
        var checkpointStep = await WaitForCheckpointAsync(http, longJob);
        using var store = new PostgresJobStore(url);
        var holder = store.Holder(longJob);
        Assert.True(holder is "worker-a" or "worker-b", $"the running job is held by '{holder}'");
        var (victim, survivor) = holder == "worker-a" ? (a, b) : (b, a);
        victim.Kill();   // SIGKILL: no shutdown path runs, the hold is simply never renewed
        await victim.WaitForExitAsync();

        foreach (var id in shortJobs.Append(longJob))
        {
            var done = await JobsHarness.WaitForStatusAsync(http, id, JobTimeout, "succeeded");
            Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());
        }
        Assert.False(survivor.HasExited);
        foreach (var id in shortJobs.Append(longJob))
        {
            var messages = await MessagesAsync(http, id);
            Assert.Single(messages, m => m == "Fine-tuning job started");   // each job ran once (then, at most, resumed)
            Assert.Single(messages, m => m == "The job has successfully completed");
        }
        foreach (var id in shortJobs) Assert.DoesNotContain("Fine-tuning job resumed from its last checkpoint", await MessagesAsync(http, id));

        var events = await MessagesAsync(http, longJob);
        foreach (var m in events) output.WriteLine(m);
        var resumedAt = int.Parse(events.Select(m => Regex.Match(m, @"^resumed from step (\d+)$")).Single(m => m.Success).Groups[1].Value);
        Assert.True(resumedAt >= checkpointStep, $"resumed at {resumedAt}, but step {checkpointStep} was checkpointed before the kill");
        // In order: created, started, a checkpoint, taken over, finished; metrics steps never go backwards past the resume point.
        int At(string message) => Array.IndexOf(events, message);
        Assert.True(At("Fine-tuning job started") < At($"Checkpoint created at step {checkpointStep}"));
        Assert.True(At($"Checkpoint created at step {checkpointStep}") < At("Fine-tuning job resumed from its last checkpoint"));
        Assert.True(At("Fine-tuning job resumed from its last checkpoint") < At("The job has successfully completed"));
        var job = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{longJob}"))!;
        var csv = (await http.GetStringAsync($"/v1/files/{job["result_files"]![0]}/content")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Enumerable.Range(1, 64), csv.Skip(1).Select(l => int.Parse(l.Split(',')[0])));   // every step exactly once
        var checkpoints = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{longJob}/checkpoints?limit=100"))!["data"]!.AsArray()
            .Select(c => c!["step_number"]!.GetValue<int>()).ToArray();
        Assert.Equal(checkpoints.Distinct(), checkpoints);
        Assert.Equal(64, checkpoints[0]);
        // The server, which trained nothing, serves what the workers produced.
        var served = await WaitForModelAsync(http, job["fine_tuned_model"]!.GetValue<string>());
        Assert.True(served, "the finished model never appeared in /v1/models");

        // A cancel reaches the worker holding the job, through the store.
        var cancelled = await CreateJobAsync(http, lines: 16, epochs: 20);
        await WaitForCheckpointAsync(http, cancelled);
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsync($"/v1/fine_tuning/jobs/{cancelled}/cancel", null)).StatusCode);
        var stopped = await JobsHarness.WaitForStatusAsync(http, cancelled, JobTimeout, "cancelled");
        Assert.Equal("cancelled", stopped["status"]!.GetValue<string>());
        Assert.Contains("Fine-tuning job cancelled", await MessagesAsync(http, cancelled));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (store.Holder(cancelled) is not null && DateTime.UtcNow < deadline) await Task.Delay(100);
        Assert.Null(store.Holder(cancelled));   // the worker let go of it
        Assert.True(store.GetJob(cancelled)!.Hyperparameters.NEpochs * 16 > int.Parse((await MessagesAsync(http, cancelled))
            .Select(m => Regex.Match(m, @"^Step (\d+)/")).Last(m => m.Success).Groups[1].Value), "the job ran to its end instead of stopping");
    }

    private Process StartWorker(string url, string artifacts, string id)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll"), "worker", "--jobs-db", url, "--artifacts", artifacts,
                     "--model", harness.ModelDir, "--ft-rank", "4", "--checkpoint-every", "4", "--lease", "3", "--poll", "0.2", "--worker-id", id })
            start.ArgumentList.Add(arg);
        var process = Process.Start(start)!;
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output.WriteLine($"[{id}] {e.Data}"); };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) output.WriteLine($"[{id}] {e.Data}"); };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        workers.Add(process);
        return process;
    }

    private static async Task<string> CreateJobAsync(HttpClient http, int lines, int epochs)
    {
        var upload = await JobsHarness.UploadRawAsync(http, System.Text.Encoding.UTF8.GetBytes(JobsHarness.CompletionData(lines)));
        var fileId = JsonNode.Parse(await upload.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
        var created = await http.PostAsync("/v1/fine_tuning/jobs", new StringContent(new JsonObject
        {
            ["model"] = JobsHarness.BaseName,
            ["training_file"] = fileId,
            ["seed"] = 3,
            ["hyperparameters"] = new JsonObject { ["n_epochs"] = epochs, ["batch_size"] = 1 },
        }.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        return JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
    }

    /// <summary>The job's event messages, oldest first.</summary>
    private static async Task<string[]> MessagesAsync(HttpClient http, string jobId) =>
        JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}/events?limit=1000"))!["data"]!.AsArray()
            .Reverse().Select(e => e!["message"]!.GetValue<string>()).ToArray();

    private static async Task<int> WaitForCheckpointAsync(HttpClient http, string jobId)
    {
        var deadline = DateTime.UtcNow + JobTimeout;
        while (DateTime.UtcNow < deadline)
        {
            var list = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}/checkpoints"))!["data"]!.AsArray();
            if (list.Count > 0) return list[0]!["step_number"]!.GetValue<int>();
            await Task.Delay(50);
        }
        throw new TimeoutException($"no checkpoint of {jobId} within {JobTimeout}");
    }

    private static async Task<bool> WaitForModelAsync(HttpClient http, string model)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            if ((await http.GetStringAsync("/v1/models")).Contains($"\"id\":\"{model}\"", StringComparison.Ordinal)) return true;
            await Task.Delay(200);
        }
        return false;
    }

    public void Dispose()
    {
        foreach (var worker in workers)
        {
            if (!worker.HasExited) worker.Kill(entireProcessTree: true);
            worker.WaitForExit();
            worker.Dispose();
        }
        harness.Dispose();
    }
}
