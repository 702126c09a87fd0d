using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace SharpTune.Tests.Server.FineTuning;

/// <summary>A job's <c>suffix</c> takes what OpenAI takes: up to 64 of <c>A-Za-z0-9._-</c>, anything longer is a 400 naming it.</summary>
public sealed class JobSuffixTests(JobsHarness harness) : IClassFixture<JobsHarness>
{
    [ServerFact]
    public async Task ASuffixOfUpTo64CharactersIsAcceptedAndALongerOneIsRefused()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        var upload = await JobsHarness.UploadRawAsync(http, Encoding.UTF8.GetBytes(JobsHarness.CompletionData(4)));
        var fileId = (string)JsonNode.Parse(await upload.Content.ReadAsStringAsync())!["id"]!;

        async Task<(HttpStatusCode Status, JsonNode Body)> Create(string suffix)
        {
            using var created = await http.PostAsync("/v1/fine_tuning/jobs", new StringContent(new JsonObject
            {
                ["model"] = JobsHarness.BaseName, ["training_file"] = fileId, ["suffix"] = suffix,
                ["hyperparameters"] = new JsonObject { ["n_epochs"] = 1, ["batch_size"] = 4 },
            }.ToJsonString(), Encoding.UTF8, "application/json"));
            return (created.StatusCode, JsonNode.Parse(await created.Content.ReadAsStringAsync())!);
        }

        var longest = "support-bot_v2." + new string('x', 49);
        Assert.Equal(64, longest.Length);
        var (status, job) = await Create(longest);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(longest, (string)job["user_provided_suffix"]!);
        var id = (string)job["id"]!;
        var finished = await JobsHarness.WaitForStatusAsync(http, id, JobsHarness.HangGuard, "succeeded", "failed");
        Assert.Equal($"ft:{JobsHarness.BaseName}:{longest}:{id}", (string)finished["fine_tuned_model"]!);

        var (tooLong, error) = await Create(longest + "x");
        Assert.Equal(HttpStatusCode.BadRequest, tooLong);
        Assert.Equal("suffix", (string)error["error"]!["param"]!);
    }
}
