using System.Net;
using System.Text.Json.Nodes;

namespace SharpTune.Tests.Server.FineTuning;

/// <summary>
/// OpenAI's job-list <c>metadata[key]=value</c> filter, and cancelling a finished job: cancelled, or succeeded, the
/// answer is the same 400 OpenAI gives (param "id", code invalid_job_state).
/// </summary>
public sealed class JobListFilterAndCancelTests(JobsHarness harness) : IClassFixture<JobsHarness>
{
    [ServerFact]
    public async Task MetadataFiltersTheListAndAFinishedJobCannotBeCancelled()
    {
        var gate = new StepGate(parkAt: 1);   // the first job is held after its first step; the others wait in the queue
        await using var server = await harness.StartAsync(harness.NewJobsDir(), o => o with { AfterStep = gate.AfterStep });
        using var http = JobsHarness.Http(server);
        var upload = await JobsHarness.UploadRawAsync(http, System.Text.Encoding.UTF8.GetBytes(JobsHarness.CompletionData(4)));
        var fileId = (string)JsonNode.Parse(await upload.Content.ReadAsStringAsync())!["id"]!;

        async Task<string> Create(JsonObject metadata, int epochs = 20)
        {
            var created = await http.PostAsync("/v1/fine_tuning/jobs", new StringContent(new JsonObject
            {
                ["model"] = JobsHarness.BaseName, ["training_file"] = fileId, ["metadata"] = metadata,
                ["hyperparameters"] = new JsonObject { ["n_epochs"] = epochs, ["batch_size"] = 4 },
            }.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, created.StatusCode);
            return (string)JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!;
        }
        async Task<(string Ids, bool HasMore)> List(string query)
        {
            var page = JsonNode.Parse(await http.GetStringAsync("/v1/fine_tuning/jobs?" + query))!;
            return (string.Join(",", page["data"]!.AsArray().Select(j => (string)j!["id"]!)), (bool)page["has_more"]!);
        }
        async Task<(HttpStatusCode Status, JsonNode? Body)> Cancel(string id)
        {
            var response = await http.PostAsync($"/v1/fine_tuning/jobs/{id}/cancel", null);
            return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync()));
        }

        var a = await Create(new JsonObject { ["team"] = "a", ["run"] = "1" });
        Assert.Equal(1, await gate.HeldAsync(a));
        var b = await Create(new JsonObject { ["team"] = "b" });
        var c = await Create(new JsonObject { ["team"] = "a", ["run"] = "2" });

        Assert.Equal(($"{c},{a}", false), await List("metadata[team]=a"));
        Assert.Equal((c, false), await List("metadata[team]=a&metadata[run]=2"));
        Assert.Equal((c, true), await List("metadata[team]=a&limit=1"));
        Assert.Equal((a, false), await List($"metadata[team]=a&after={c}"));
        Assert.Equal((b, false), await List("metadata%5Bteam%5D=b"));   // the brackets percent-encoded, as some clients send them
        Assert.Equal(("", false), await List("metadata[team]=z"));
        Assert.Equal(($"{c},{b},{a}", false), await List("limit=10"));

        // A queued job cancels at once; a second cancel finds it finished.
        Assert.Equal(HttpStatusCode.OK, (await Cancel(b)).Status);
        var again = await Cancel(b);
        Assert.Equal(HttpStatusCode.BadRequest, again.Status);
        Assert.Equal(("id", "invalid_job_state"), ((string?)again.Body!["error"]!["param"], (string?)again.Body["error"]!["code"]));
        foreach (var id in new[] { c, a }) Assert.Equal(HttpStatusCode.OK, (await Cancel(id)).Status);
        await JobsHarness.WaitForStatusAsync(http, a, JobsHarness.HangGuard, "cancelled");
        Assert.Equal(HttpStatusCode.BadRequest, (await Cancel(a)).Status);

        // A succeeded job: one step (4 lines, batch 4, one epoch), never held.
        gate.ParkAt = int.MaxValue;
        var done = await Create(new JsonObject { ["team"] = "a" }, epochs: 1);
        Assert.Equal("succeeded", (string)(await JobsHarness.WaitForStatusAsync(http, done, JobsHarness.HangGuard, "succeeded", "failed"))["status"]!);
        var refused = await Cancel(done);
        Assert.Equal(HttpStatusCode.BadRequest, refused.Status);
        Assert.Equal(("id", "invalid_job_state"), ((string?)refused.Body!["error"]!["param"], (string?)refused.Body["error"]!["code"]));
        Assert.Equal("succeeded", (string)JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{done}"))!["status"]!);
    }
}
