using System.Net;
using System.Text.Json.Nodes;

namespace SharpTune.Tests.Server.FineTuning;

/// <summary>
/// <c>DELETE /v1/models/{id}</c> with keys scoped to their own fine-tuning jobs: another key's fine-tuned or checkpoint
/// model is answered exactly as a model that does not exist (so its existence does not leak) and stays served; the
/// owner deletes it.
/// </summary>
public sealed class ScopedModelDeletionTests(JobsHarness harness) : IClassFixture<JobsHarness>
{
    [ServerFact]
    public async Task AKeyCannotDeleteNorLearnOfAnotherKeysModelAndDeletesItsOwn()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir(), o => o with { ScopedKeys = true });
        using var owner = JobsHarness.Http(server);
        using var other = JobsHarness.Http(server, JobsHarness.OtherKey);
        var upload = await JobsHarness.UploadRawAsync(owner, System.Text.Encoding.UTF8.GetBytes(JobsHarness.CompletionData(4)));
        var fileId = (string)JsonNode.Parse(await upload.Content.ReadAsStringAsync())!["id"]!;
        var created = await owner.PostAsync("/v1/fine_tuning/jobs", new StringContent(new JsonObject
        {
            ["model"] = JobsHarness.BaseName, ["training_file"] = fileId, ["suffix"] = "mine",
            ["hyperparameters"] = new JsonObject { ["n_epochs"] = 1, ["batch_size"] = 2 },   // 2 steps: a checkpoint at step 2
        }.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var jobId = (string)JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!;
        var done = await JobsHarness.WaitForStatusAsync(owner, jobId, JobsHarness.HangGuard, "succeeded");
        Assert.True((string?)done["status"] == "succeeded", done.ToJsonString());
        var model = (string)done["fine_tuned_model"]!;
        var checkpoint = $"{model}:ckpt-step-2";
        Assert.Equal(HttpStatusCode.OK, (await owner.GetAsync($"/v1/models/{checkpoint}")).StatusCode);

        // The error a model that never existed gets, with its name taken out, is the one another key's models get.
        static async Task<(HttpStatusCode Status, string Body)> Delete(HttpClient http, string id)
        {
            var response = await http.DeleteAsync($"/v1/models/{id}");
            return (response.StatusCode, (await response.Content.ReadAsStringAsync()).Replace(id, "<id>"));
        }
        var missing = await Delete(other, "ft:stories260K:mine:ftjob-missing");
        Assert.Equal(HttpStatusCode.NotFound, missing.Status);
        Assert.Equal("model_not_found", (string?)JsonNode.Parse(missing.Body)!["error"]!["code"]);
        foreach (var id in new[] { model, checkpoint })
        {
            Assert.Equal(missing, await Delete(other, id));
            Assert.Equal(HttpStatusCode.OK, (await owner.GetAsync($"/v1/models/{id}")).StatusCode);   // still served
        }
        Assert.True(Directory.Exists(server.FineTuning!.RunDirectory(jobId) + "/final"));

        foreach (var id in new[] { model, checkpoint })
        {
            var deleted = JsonNode.Parse(await (await owner.DeleteAsync($"/v1/models/{id}")).Content.ReadAsStringAsync())!;
            Assert.Equal((id, "model", true), ((string)deleted["id"]!, (string)deleted["object"]!, (bool)deleted["deleted"]!));
            Assert.Equal(missing, await Delete(owner, id));   // gone: now it does not exist for its owner either
        }
        Assert.False(Directory.Exists(server.FineTuning.RunDirectory(jobId) + "/final"));
    }
}
