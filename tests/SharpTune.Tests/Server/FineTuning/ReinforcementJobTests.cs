using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using OpenAI.Chat;
using OpenAI.Files;
using OpenAI.FineTuning;
using SharpTune.Tests.Support;

#pragma warning disable OPENAI001   // the SDK marks its fine-tuning client experimental

namespace SharpTune.Tests.Server.FineTuning;

/// <summary>
/// Reinforcement fine-tuning jobs (method "reinforcement" with OpenAI graders) over loopback with the official SDK: the
/// SDK has no typed reinforcement method, so the job is created through its protocol method with OpenAI's JSON body.
/// </summary>
public sealed class ReinforcementJobTests(JobsHarness harness) : IClassFixture<JobsHarness>
{
    private static readonly TimeSpan JobTimeout = TimeSpan.FromSeconds(240);

    /// <summary>Chat prompts without answers, each with the reference the grader reads.</summary>
    private static string Prompts(int lines) => string.Concat(Enumerable.Range(0, lines).Select(i => new JsonObject
    {
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"Tell me story {i}." }),
        ["reference_answer"] = "Lily",
    }.ToJsonString() + "\n"));

    private static JsonObject Grader => JsonNode.Parse("""
        {"type": "multi", "name": "lily", "calculate_output": "0.5 * mentions + 0.5 * similar",
         "graders": {
           "mentions": {"type": "string_check", "name": "mentions", "input": "{{sample.output_text}}", "reference": "{{item.reference_answer}}", "operation": "like"},
           "similar": {"type": "text_similarity", "name": "similar", "input": "{{sample.output_text}}", "reference": "{{item.reference_answer}} saw a big ball.", "evaluation_metric": "fuzzy_match"}}}
        """)!.AsObject();

    [ServerFact]
    public async Task AReinforcementJobTrainsWithItsGraderReportsRewardsAndServesItsCheckpoints()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir(), o => o with { MaxSeqLength = 64 }, chatTemplate: "chatml");
        var sdk = JobsHarness.Sdk(server);
        using var http = JobsHarness.Http(server);
        var file = (await sdk.GetOpenAIFileClient().UploadFileAsync(BinaryData.FromString(Prompts(4)).ToStream(), "prompts.jsonl", FileUploadPurpose.FineTune)).Value;

        // Prompt-only data cannot train a supervised job.
        var supervised = await http.PostAsync("/v1/fine_tuning/jobs", Json(new JsonObject { ["model"] = JobsHarness.BaseName, ["training_file"] = file.Id }));
        Assert.Equal(HttpStatusCode.BadRequest, supervised.StatusCode);
        Assert.Contains("reinforcement", await supervised.Content.ReadAsStringAsync());

        var body = new JsonObject
        {
            ["model"] = JobsHarness.BaseName, ["training_file"] = file.Id, ["suffix"] = "rft", ["seed"] = 3,
            ["method"] = new JsonObject
            {
                ["type"] = "reinforcement",
                ["reinforcement"] = new JsonObject
                {
                    ["grader"] = Grader,
                    ["hyperparameters"] = new JsonObject { ["batch_size"] = 2, ["n_epochs"] = 2, ["learning_rate_multiplier"] = 20 },
                },
            },
        };
        var client = sdk.GetFineTuningClient();
        var job = await client.FineTuneAsync(BinaryContent.Create(BinaryData.FromString(body.ToJsonString())), waitUntilCompleted: false, options: null);
        var done = await JobsHarness.WaitForStatusAsync(http, job.JobId, JobTimeout, "succeeded", "failed");
        Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());
        Assert.Equal("reinforcement", done["method"]!["type"]!.GetValue<string>());
        Assert.Equal("multi", done["method"]!["reinforcement"]!["grader"]!["type"]!.GetValue<string>());

        // 4 prompts, batch 2, 2 epochs: 4 steps, each event carrying the mean reward and each grader's.
        var events = new List<FineTuningEvent>();
        await foreach (var e in job.GetEventsAsync(new GetEventsOptions { PageSize = 100 })) events.Add(e);
        var metrics = events.Where(e => e.Kind == "metrics").Reverse().Select(e => JsonNode.Parse(e.Data!.ToString())!).ToList();
        Assert.Equal(4, metrics.Count);
        Assert.All(metrics, m => Assert.InRange(m["train_reward_mean"]!.GetValue<double>(), 0, 1));
        Assert.All(metrics, m => Assert.NotNull(m["train_reward_mean/lily"]));
        Assert.Contains(events, e => e.Message.Contains("reward="));

        var checkpoints = new List<FineTuningCheckpoint>();
        await foreach (var c in job.GetCheckpointsAsync()) checkpoints.Add(c);
        Assert.Equal([4, 2], checkpoints.Select(c => c.StepNumber));
        var greedy = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 };
        const string prompt = "Tell me story 1.";
        var answer = (await sdk.GetChatClient(done["fine_tuned_model"]!.GetValue<string>()).CompleteChatAsync([new UserChatMessage(prompt)], greedy)).Value.Content[0].Text;
        Assert.Equal(harness.Reference(prompt, 8, server.FineTuning!.RunDirectory(job.JobId) + "/final", "chatml"), answer);
        var atStep2 = (await sdk.GetChatClient(checkpoints[^1].ModelId).CompleteChatAsync([new UserChatMessage(prompt)], greedy)).Value.Content[0].Text;
        Assert.False(string.IsNullOrEmpty(atStep2));
    }

    [ServerFact]
    public async Task AMalformedGraderIsABadRequestNamingItsField()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir(), chatTemplate: "chatml");
        var sdk = JobsHarness.Sdk(server);
        using var http = JobsHarness.Http(server);
        var file = (await sdk.GetOpenAIFileClient().UploadFileAsync(BinaryData.FromString(Prompts(2)).ToStream(), "prompts.jsonl", FileUploadPurpose.FineTune)).Value;
        var grader = Grader;
        grader["calculate_output"] = "mentions + missing";
        var response = await http.PostAsync("/v1/fine_tuning/jobs", Json(new JsonObject
        {
            ["model"] = JobsHarness.BaseName, ["training_file"] = file.Id,
            ["method"] = new JsonObject { ["type"] = "reinforcement", ["reinforcement"] = new JsonObject { ["grader"] = grader } },
        }));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("method.reinforcement.grader.calculate_output", error["param"]!.GetValue<string>());
        Assert.Contains("'missing' is not one of the graders", error["message"]!.GetValue<string>());
    }

    private static StringContent Json(JsonObject body) => new(body.ToJsonString(), Encoding.UTF8, "application/json");
}
