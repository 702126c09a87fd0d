#pragma warning disable OPENAI001   // the SDK marks its fine-tuning client experimental
using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using System.Text.Json.Nodes;
using OpenAI.Chat;
using OpenAI.Files;
using OpenAI.FineTuning;

namespace SharpTune.Tests.Server.FineTuning;

/// <summary>Fine-tuning jobs end to end over loopback: the official OpenAI SDK's file and fine-tuning clients against a real server.</summary>
public sealed class FineTuningJobTests(JobsHarness harness, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<JobsHarness>
{
    private static readonly TimeSpan JobTimeout = JobsHarness.HangGuard;

    [ServerFact]
    public async Task SupervisedJobSucceedsAndItsModelAndCheckpointsAnswerAsTheirAdaptersDo()
    {
        var jobsDir = harness.NewJobsDir();
        await using var server = await harness.StartAsync(jobsDir);
        var sdk = JobsHarness.Sdk(server);
        using var http = JobsHarness.Http(server);

        var data = JobsHarness.CompletionData(16);
        var file = (await sdk.GetOpenAIFileClient().UploadFileAsync(BinaryData.FromString(data).ToStream(), "train.jsonl", FileUploadPurpose.FineTune)).Value;
        Assert.StartsWith("file-", file.Id);
        Assert.Equal("train.jsonl", file.Filename);
        Assert.Equal(System.Text.Encoding.UTF8.GetByteCount(data), file.SizeInBytesLong);
        Assert.Equal(data, await http.GetStringAsync($"/v1/files/{file.Id}/content"));

        var client = sdk.GetFineTuningClient();
        var job = await client.FineTuneAsync(JobsHarness.BaseName, file.Id, waitUntilCompleted: false, new FineTuningOptions
        {
            Suffix = "story",
            Seed = 7,
            TrainingMethod = FineTuningTrainingMethod.CreateSupervised(new HyperparameterBatchSize(4), new HyperparameterEpochCount(2), new HyperparameterLearningRate(50)),
        });
        Assert.StartsWith("ftjob-", job.JobId);
        Assert.Equal(7, job.Seed);

        var done = await JobsHarness.WaitForStatusAsync(http, job.JobId, JobTimeout, "succeeded");
        Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());
        await job.UpdateStatusAsync();
        Assert.Equal(FineTuningStatus.Succeeded, job.Status);
        var modelId = $"ft:{JobsHarness.BaseName}:story:{job.JobId}";
        Assert.Equal(modelId, job.Value);
        Assert.Equal(8, done["hyperparameters"]!["n_epochs"]!.GetValue<int>() * 4);   // 2 epochs as asked, 16 examples / batch 4 = 4 steps each
        // 2 epochs of 16 examples, each at least its completion and EOS.
        var completionTokens = SharpTune.Tokenization.HfTokenizer.FromDirectory(harness.ModelDir).Encode("Lily saw a big red ball.").Count + 1;
        Assert.True(done["trained_tokens"]!.GetValue<long>() >= 32 * completionTokens, done.ToJsonString());
        Assert.True(done["finished_at"]!.GetValue<long>() >= done["created_at"]!.GetValue<long>(), done.ToJsonString());

        // Events, newest first through the SDK; the metrics events' train_loss falls from the first step to the last.
        var events = new List<string>();
        await foreach (var e in job.GetEventsAsync(new GetEventsOptions { PageSize = 5 })) events.Add(e.Message);
        Assert.Equal("The job has successfully completed", events[0]);
        var raw = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{job.JobId}/events?limit=1000"))!["data"]!.AsArray();
        Assert.Equal(events.Count, raw.Count);
        var metrics = raw.Where(e => e!["type"]!.GetValue<string>() == "metrics").Select(e => e!["data"]!).Reverse().ToArray();
        Assert.Equal(Enumerable.Range(1, 8), metrics.Select(m => m["step"]!.GetValue<int>()));
        Assert.All(metrics, m => Assert.Equal(8, m["total_steps"]!.GetValue<int>()));
        Assert.True(metrics[^1]["train_loss"]!.GetValue<double>() < metrics[0]["train_loss"]!.GetValue<double>() * 0.7,
            $"train_loss did not fall: {string.Join(", ", metrics.Select(m => m["train_loss"]))}");

        // Checkpoints every 2 steps, newest first, each a served model.
        var checkpoints = new List<FineTuningCheckpoint>();
        await foreach (var c in job.GetCheckpointsAsync()) checkpoints.Add(c);
        Assert.Equal([8, 6, 4, 2], checkpoints.Select(c => c.StepNumber));
        Assert.All(checkpoints, c => Assert.StartsWith("ftckpt-", c.Id));
        Assert.Equal($"{modelId}:ckpt-step-4", checkpoints[2].ModelId);
        Assert.Equal(job.JobId, checkpoints[2].JobId);
        Assert.Equal(metrics[3]["train_loss"]!.GetValue<double>(), checkpoints[2].Metrics.TrainLoss!.Value, 6);   // step 4's loss

        var models = await http.GetStringAsync("/v1/models");
        Assert.Contains($"\"id\":\"{modelId}\"", models);
        Assert.Contains($"\"id\":\"{modelId}:ckpt-step-4\"", models);

        // The served fine-tuned model and a checkpoint answer exactly as their adapters loaded directly do.
        var greedy = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 };
        const string prompt = "Tom had a toy number 3.";
        var chat = (await sdk.GetChatClient(modelId).CompleteChatAsync([new UserChatMessage(prompt)], greedy)).Value.Content[0].Text;
        var finalDir = server.FineTuning!.RunDirectory(job.JobId) + "/final";
        Assert.Equal(harness.Reference(prompt, 16, finalDir), chat);
        output.WriteLine($"fine-tuned: {chat}");
        var atStep4 = (await sdk.GetChatClient(checkpoints[2].ModelId).CompleteChatAsync([new UserChatMessage(prompt)], greedy)).Value.Content[0].Text;
        Assert.Equal(harness.Reference(prompt, 16, server.FineTuning.CheckpointDirectory(job.JobId, 4)), atStep4);
        var baseAnswer = (await sdk.GetChatClient(JobsHarness.BaseName).CompleteChatAsync([new UserChatMessage(prompt)], greedy)).Value.Content[0].Text;
        output.WriteLine($"base: {baseAnswer}");
        Assert.NotEqual(baseAnswer, chat);

        // The results file: one CSV row per step.
        var resultId = done["result_files"]![0]!.GetValue<string>();
        var csv = (await http.GetStringAsync($"/v1/files/{resultId}/content")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("step,train_loss,train_mean_token_accuracy,valid_loss,valid_mean_token_accuracy", csv[0]);
        Assert.Equal(9, csv.Length);
        Assert.StartsWith("8,", csv[^1]);

        // The job in the SDK's list.
        var listed = new List<string>();
        await foreach (var j in client.GetJobsAsync(new FineTuningJobCollectionOptions { PageSize = 10 })) listed.Add(j.JobId);
        Assert.Contains(job.JobId, listed);

        // Deleting the fine-tuned model and a checkpoint model, as OpenAI's models.delete does: they stop being served,
        // their adapter folders go, the job keeps its record; the base model and unknown names are refused.
        var modelClient = sdk.GetOpenAIModelClient();
        foreach (var (deleted, folder) in new[] { (modelId, finalDir), (checkpoints[2].ModelId, server.FineTuning.CheckpointDirectory(job.JobId, 4)) })
        {
            var result = (await modelClient.DeleteModelAsync(deleted)).Value;
            Assert.True(result.Deleted);
            Assert.Equal(deleted, result.ModelId);
            Assert.False(Directory.Exists(folder), $"{folder} is still there");
            Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/v1/models/{deleted}")).StatusCode);
            var gone = await Assert.ThrowsAsync<System.ClientModel.ClientResultException>(() =>
                sdk.GetChatClient(deleted).CompleteChatAsync([new UserChatMessage(prompt)], greedy));
            Assert.Equal(404, gone.Status);
            Assert.Equal(HttpStatusCode.NotFound, (await http.DeleteAsync($"/v1/models/{deleted}")).StatusCode);   // once only
        }
        models = await http.GetStringAsync("/v1/models");
        Assert.DoesNotContain($"\"id\":\"{modelId}\"", models);
        Assert.Contains($"\"id\":\"{modelId}:ckpt-step-6\"", models);   // the other checkpoints stay
        Assert.Equal(modelId, JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{job.JobId}"))!["fine_tuned_model"]!.GetValue<string>());
        var baseDeletion = await http.DeleteAsync($"/v1/models/{JobsHarness.BaseName}");
        Assert.Equal(HttpStatusCode.Forbidden, baseDeletion.StatusCode);
        Assert.Contains("model_not_deletable", await baseDeletion.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.NotFound, (await http.DeleteAsync("/v1/models/ft:no-such-model")).StatusCode);

        // A restart on the same jobs folder serves the remaining checkpoints, not the deleted models.
        await server.DisposeAsync();
        await using var restarted = await harness.StartAsync(jobsDir);
        using var again = JobsHarness.Http(restarted);
        models = await again.GetStringAsync("/v1/models");
        Assert.Contains($"\"id\":\"{modelId}:ckpt-step-6\"", models);
        Assert.DoesNotContain($"\"id\":\"{modelId}\"", models);
        Assert.DoesNotContain($"\"id\":\"{modelId}:ckpt-step-4\"", models);
    }

    [ServerTheory]
    [InlineData("loha")]
    [InlineData("lokr")]
    [InlineData("vera")]
    [InlineData("oft")]
    public async Task LycorisJobCheckpointsAreServedAsTheirAdaptersAnswer(string method)
    {
        // LoHa's, LoKr's, VeRA's and OFT's checkpoint names are PEFT's keys without its prefix, as LoRA's: their checkpoints are
        // adapters too (VeRA's with its projections drawn again from the seed).
        var jobsDir = harness.NewJobsDir();
        // Every method on the jobs' default "all-linear": OFT's 32-feature blocks do not divide the 172 inputs of stories260K's
        // down_proj, which get PEFT's nearest divisor, 43. OFT has no LoRA rank: its server keeps the default one.
        await using var server = await harness.StartAsync(jobsDir, o => o with { Method = method, LoraRank = method == "oft" ? 8 : o.LoraRank });
        var sdk = JobsHarness.Sdk(server);
        using var http = JobsHarness.Http(server);
        var file = (await sdk.GetOpenAIFileClient().UploadFileAsync(BinaryData.FromString(JobsHarness.CompletionData(8)).ToStream(), "train.jsonl",
            FileUploadPurpose.FineTune)).Value;
        var job = await sdk.GetFineTuningClient().FineTuneAsync(JobsHarness.BaseName, file.Id, waitUntilCompleted: false, new FineTuningOptions
        {
            Suffix = method,
            TrainingMethod = FineTuningTrainingMethod.CreateSupervised(new HyperparameterBatchSize(4), new HyperparameterEpochCount(2), new HyperparameterLearningRate(50)),
        });
        var done = await JobsHarness.WaitForStatusAsync(http, job.JobId, JobTimeout, "succeeded");
        Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());
        var checkpoints = new List<FineTuningCheckpoint>();
        await foreach (var c in job.GetCheckpointsAsync()) checkpoints.Add(c);
        Assert.Equal([4, 2], checkpoints.Select(c => c.StepNumber));
        var atStep2 = checkpoints[1].ModelId;
        Assert.Contains($"\"id\":\"{atStep2}\"", await http.GetStringAsync("/v1/models"));
        var adapterDir = server.FineTuning!.CheckpointDirectory(job.JobId, 2);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(adapterDir, SharpTune.Peft.AdapterFiles.ConfigFileName)))!;
        Assert.Equal(method.ToUpperInvariant(), config["peft_type"]!.GetValue<string>());
        var greedy = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 };
        const string prompt = "Tom had a toy number 3.";
        var answer = (await sdk.GetChatClient(atStep2).CompleteChatAsync([new UserChatMessage(prompt)], greedy)).Value.Content[0].Text;
        Assert.Equal(harness.Reference(prompt, 16, adapterDir), answer);
    }

    [ServerFact]
    public async Task AnOftServerWithALoraRankIsRefusedAtStart()
    {
        // Jobs pass the rank as lora_r/lora_alpha, which OFT refuses: the server refuses to start rather than fail every job.
        var error = await Assert.ThrowsAnyAsync<ArgumentException>(() => harness.StartAsync(harness.NewJobsDir(), o => o with { Method = "oft", LoraRank = 16 }));
        Assert.Contains("LoraRank (--ft-rank) 16 does not apply to fine-tuning method 'oft'", error.Message);
    }

    [ServerFact]
    public async Task AChatFileTrainsWithTheServersChatTemplateAndTheModelAnswersAsItsAdapterDoes()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir(), chatTemplate: "chatml");
        var sdk = JobsHarness.Sdk(server);
        using var http = JobsHarness.Http(server);
        var lines = string.Concat(Enumerable.Range(0, 8).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "system", ["content"] = "You tell short stories." },
                new JsonObject { ["role"] = "user", ["content"] = $"Tell me story {i}." },
                new JsonObject { ["role"] = "assistant", ["content"] = "Lily saw a big red ball.", ["weight"] = 1 }),
        }.ToJsonString() + "\n"));
        var file = (await sdk.GetOpenAIFileClient().UploadFileAsync(BinaryData.FromString(lines).ToStream(), "chat.jsonl", FileUploadPurpose.FineTune)).Value;
        var job = await sdk.GetFineTuningClient().FineTuneAsync(JobsHarness.BaseName, file.Id, waitUntilCompleted: false, new FineTuningOptions
        {
            Suffix = "chat",
            TrainingMethod = FineTuningTrainingMethod.CreateSupervised(new HyperparameterBatchSize(4), new HyperparameterEpochCount(3), new HyperparameterLearningRate(50)),
        });
        var done = await JobsHarness.WaitForStatusAsync(http, job.JobId, JobTimeout, "succeeded");
        Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());

        const string prompt = "Tell me story 5.";
        var answer = (await sdk.GetChatClient(done["fine_tuned_model"]!.GetValue<string>())
            .CompleteChatAsync([new UserChatMessage(prompt)], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 })).Value.Content[0].Text;
        Assert.Equal(harness.Reference(prompt, 12, server.FineTuning!.RunDirectory(job.JobId) + "/final", "chatml"), answer);
        Assert.True(File.Exists(Path.Combine(server.FineTuning.RunDirectory(job.JobId), "final", "chat_template.jinja")));
    }

    [ServerFact]
    public async Task DpoJobOnPreferencePairsSucceedsAndItsModelAnswersAsItsAdapterDoes()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        var sdk = JobsHarness.Sdk(server);
        using var http = JobsHarness.Http(server);
        var file = (await sdk.GetOpenAIFileClient().UploadFileAsync(BinaryData.FromString(JobsHarness.PreferenceData(8)).ToStream(), "pairs.jsonl", FileUploadPurpose.FineTune)).Value;

        // Preference data is refused for supervised training, naming the field.
        var wrong = await http.PostAsync("/v1/fine_tuning/jobs", Json(new JsonObject { ["model"] = JobsHarness.BaseName, ["training_file"] = file.Id }));
        Assert.Equal(HttpStatusCode.BadRequest, wrong.StatusCode);
        Assert.Equal("training_file", JsonNode.Parse(await wrong.Content.ReadAsStringAsync())!["error"]!["param"]!.GetValue<string>());

        var job = await sdk.GetFineTuningClient().FineTuneAsync(JobsHarness.BaseName, file.Id, waitUntilCompleted: false, new FineTuningOptions
        {
            Suffix = "pref",
            Seed = 5,
            TrainingMethod = FineTuningTrainingMethod.CreateDirectPreferenceOptimization(new HyperparameterBatchSize(4), new HyperparameterEpochCount(4),
                new HyperparameterLearningRate(50), new HyperparameterBetaFactor(1)),
        });
        var done = await JobsHarness.WaitForStatusAsync(http, job.JobId, JobTimeout, "succeeded");
        Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());
        Assert.Equal("dpo", done["method"]!["type"]!.GetValue<string>());
        Assert.Equal(1.0, done["method"]!["dpo"]!["hyperparameters"]!["beta"]!.GetValue<double>());
        var modelId = $"ft:{JobsHarness.BaseName}:pref:{job.JobId}";
        Assert.Equal(modelId, done["fine_tuned_model"]!.GetValue<string>());

        // DPO's loss starts at ln 2 (policy = reference) and falls as the preferred answers gain on the rejected ones.
        var metrics = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{job.JobId}/events?limit=1000"))!["data"]!.AsArray()
            .Where(e => e!["type"]!.GetValue<string>() == "metrics").Select(e => e!["data"]!["train_loss"]!.GetValue<double>()).Reverse().ToArray();
        Assert.Equal(8, metrics.Length);
        Assert.Equal(Math.Log(2), metrics[0], 3);
        Assert.True(metrics[^1] < metrics[0] * 0.8, $"DPO loss did not fall: {string.Join(", ", metrics)}");

        var checkpoints = new List<FineTuningCheckpoint>();
        await foreach (var c in job.GetCheckpointsAsync()) checkpoints.Add(c);
        Assert.Equal([8, 6, 4, 2], checkpoints.Select(c => c.StepNumber));
        var csv = (await http.GetStringAsync($"/v1/files/{done["result_files"]![0]}/content")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(csv.Skip(1), row => Assert.InRange(double.Parse(row.Split(',')[2], System.Globalization.CultureInfo.InvariantCulture), 0, 1));

        const string prompt = "Story 3";
        var greedy = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };
        var answer = (await sdk.GetChatClient(modelId).CompleteChatAsync([new UserChatMessage(prompt)], greedy)).Value.Content[0].Text;
        Assert.Equal(harness.Reference(prompt, 12, server.FineTuning!.RunDirectory(job.JobId) + "/final"), answer);
        var atStep2 = (await sdk.GetChatClient(checkpoints[^1].ModelId).CompleteChatAsync([new UserChatMessage(prompt)], greedy)).Value.Content[0].Text;
        Assert.Equal(harness.Reference(prompt, 12, server.FineTuning.CheckpointDirectory(job.JobId, 2)), atStep2);

        // Pagination: newest first, `after` continues from the previous page's last id.
        var second = await sdk.GetFineTuningClient().FineTuneAsync(JobsHarness.BaseName, file.Id, waitUntilCompleted: false,
            new FineTuningOptions { TrainingMethod = FineTuningTrainingMethod.CreateDirectPreferenceOptimization() });
        await http.PostAsync($"/v1/fine_tuning/jobs/{second.JobId}/cancel", null);
        var first = JsonNode.Parse(await http.GetStringAsync("/v1/fine_tuning/jobs?limit=1"))!;
        Assert.Equal(second.JobId, first["data"]![0]!["id"]!.GetValue<string>());
        Assert.True(first["has_more"]!.GetValue<bool>());
        var next = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs?limit=1&after={second.JobId}"))!;
        Assert.Equal(job.JobId, next["data"]![0]!["id"]!.GetValue<string>());
        Assert.False(next["has_more"]!.GetValue<bool>());
    }

    [ServerFact]
    public async Task CancellingARunningJobStopsItAfterTheCurrentStepAndLeavesOnlyCompleteCheckpoints()
    {
        var gate = new StepGate(parkAt: 5);
        await using var server = await harness.StartAsync(harness.NewJobsDir(), o => o with { AfterStep = gate.AfterStep });
        using var http = JobsHarness.Http(server);
        var jobId = await StartLongJobAsync(http);
        Assert.Equal(5, await gate.HeldAsync(jobId));   // held after step 5: checkpoints 2 and 4 are written

        // Inference goes on while the job trains.
        var reply = await JobsHarness.Sdk(server).GetChatClient(JobsHarness.BaseName)
            .CompleteChatAsync([new UserChatMessage("Tom had a toy.")], new ChatCompletionOptions { MaxOutputTokenCount = 4 });
        Assert.False(string.IsNullOrEmpty(reply.Value.Content[0].Text));
        Assert.Equal("running", JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}"))!["status"]!.GetValue<string>());

        var job = await JobsHarness.Sdk(server).GetFineTuningClient().GetJobAsync(jobId);
        Assert.Equal(FineTuningStatus.Running, job.Status);
        await job.CancelAndUpdateAsync();
        var stored = await JobsHarness.WaitForStatusAsync(http, jobId, JobTimeout, "cancelled");
        Assert.Equal("cancelled", stored["status"]!.GetValue<string>());
        Assert.Null(stored["fine_tuned_model"]);

        // The cancel reached the job while it was held after step 5: it never started step 6.
        Assert.Equal(Enumerable.Range(1, 5), (await MetricsStepsAsync(http, jobId)).Order());
        var checkpoints = Path.Combine(server.FineTuning!.RunDirectory(jobId), "checkpoints");
        Assert.All(Directory.GetDirectories(checkpoints), d =>
        {
            Assert.StartsWith("step-", Path.GetFileName(d));
            Assert.True(File.Exists(Path.Combine(d, "trainer_state.json")), $"{d} is incomplete");
        });
        Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(server.FineTuning.CheckpointDirectory(jobId, 1))!, "*.incomplete"));
    }

    [ServerFact]
    public async Task APausedJobStopsAndResumesFromItsLastCheckpointAndTheQueueIsBounded()
    {
        var gate = new StepGate(parkAt: 5);
        await using var server = await harness.StartAsync(harness.NewJobsDir(), o => o with { MaxQueuedJobs = 1, AfterStep = gate.AfterStep });
        using var http = JobsHarness.Http(server);
        var running = await StartLongJobAsync(http);
        Assert.Equal(5, await gate.HeldAsync(running));
        var queued = await StartLongJobAsync(http);
        var refused = await http.PostAsync("/v1/fine_tuning/jobs", Json(new JsonObject
        {
            ["model"] = JobsHarness.BaseName,
            ["training_file"] = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{queued}"))!["training_file"]!.GetValue<string>(),
        }));
        Assert.Equal((HttpStatusCode)429, refused.StatusCode);

        await http.PostAsync($"/v1/fine_tuning/jobs/{running}/pause", null);
        Assert.Equal("paused", (await JobsHarness.WaitForStatusAsync(http, running, JobTimeout, "paused"))["status"]!.GetValue<string>());
        // The queued job starts once the first is paused; it is cancelled where the gate holds it, so the first resumes alone.
        Assert.Equal(5, await gate.HeldAsync(queued));
        await http.PostAsync($"/v1/fine_tuning/jobs/{queued}/cancel", null);
        Assert.Equal("cancelled", (await JobsHarness.WaitForStatusAsync(http, queued, JobTimeout, "cancelled"))["status"]!.GetValue<string>());
        var lastCheckpoint = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{running}/checkpoints"))!["data"]![0]!["step_number"]!.GetValue<int>();
        Assert.Equal(4, lastCheckpoint);
        Assert.Equal("paused", JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{running}"))!["status"]!.GetValue<string>());

        var resumed = JsonNode.Parse(await (await http.PostAsync($"/v1/fine_tuning/jobs/{running}/resume", null)).Content.ReadAsStringAsync())!;
        Assert.Equal("queued", resumed["status"]!.GetValue<string>());
        Assert.Equal(5, await gate.HeldAsync(running));   // held again after redoing step 5

        // Oldest first: steps 1–5, nothing while paused, then the resumed run starts from the last checkpoint (step 4).
        var events = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{running}/events?limit=1000"))!["data"]!.AsArray().Reverse().ToArray();
        var timeline = events.Select(e => e!["type"]!.GetValue<string>() == "metrics" ? $"step {e["data"]!["step"]}" : e!["message"]!.GetValue<string>()).ToList();
        var pausedAt = timeline.IndexOf("Fine-tuning job paused; it continues from its last checkpoint when resumed");
        var resumedAt = timeline.IndexOf("Fine-tuning job resumed");
        Assert.True(pausedAt > 0 && resumedAt > pausedAt, string.Join("\n", timeline));
        Assert.Equal(["step 1", "step 2", "step 3", "step 4", "step 5"], timeline[..pausedAt].Where(t => t.StartsWith("step ", StringComparison.Ordinal)));
        Assert.DoesNotContain(timeline[pausedAt..resumedAt], t => t.StartsWith("step ", StringComparison.Ordinal));
        var afterResume = timeline[resumedAt..];
        Assert.Contains($"resumed from step {lastCheckpoint}", afterResume);
        Assert.Equal([$"step {lastCheckpoint + 1}"], afterResume.Where(t => t.StartsWith("step ", StringComparison.Ordinal)));
        await http.PostAsync($"/v1/fine_tuning/jobs/{running}/cancel", null);
        Assert.Equal("cancelled", (await JobsHarness.WaitForStatusAsync(http, running, JobTimeout, "cancelled"))["status"]!.GetValue<string>());
    }

    [ServerFact]
    public async Task AJobWhoseFileIsDeletedWhileItWaitsFailsWithAnInvalidFileError()
    {
        await using var server = await harness.StartAsync(harness.NewJobsDir());
        using var http = JobsHarness.Http(server);
        var running = await StartLongJobAsync(http);
        await JobsHarness.WaitForStatusAsync(http, running, JobTimeout, "running");
        var waiting = await StartLongJobAsync(http);
        var fileId = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{waiting}"))!["training_file"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.OK, (await http.DeleteAsync($"/v1/files/{fileId}")).StatusCode);
        await http.PostAsync($"/v1/fine_tuning/jobs/{running}/cancel", null);

        var failed = await JobsHarness.WaitForStatusAsync(http, waiting, JobTimeout, "failed");
        Assert.Equal("failed", failed["status"]!.GetValue<string>());
        Assert.Equal("invalid_file", failed["error"]!["code"]!.GetValue<string>());
        Assert.Equal("training_file", failed["error"]!["param"]!.GetValue<string>());
        Assert.Contains(fileId, failed["error"]!["message"]!.GetValue<string>());
    }

    [ServerFact]
    public async Task AJobRunningWhenTheServerStopsResumesFromItsLastCheckpointAfterARestart()
    {
        var jobsDir = harness.NewJobsDir();
        string jobId, fileId;
        int checkpointStep;
        var gate = new StepGate(parkAt: 5);
        var server = await harness.StartAsync(jobsDir, o => o with { CheckpointEvery = 4, AfterStep = gate.AfterStep });
        try
        {
            using var http = JobsHarness.Http(server);
            jobId = await StartLongJobAsync(http, epochs: 3);
            fileId = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}"))!["training_file"]!.GetValue<string>();
            Assert.Equal(5, await gate.HeldAsync(jobId));
            checkpointStep = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}/checkpoints"))!["data"]![0]!["step_number"]!.GetValue<int>();
        }
        finally
        {
            await server.DisposeAsync();   // held after step 5: the job must stay "running", not become cancelled or failed
        }
        Assert.Equal(4, checkpointStep);

        await using var restarted = await harness.StartAsync(jobsDir, o => o with { CheckpointEvery = 4 });
        using var again = JobsHarness.Http(restarted);
        var done = await JobsHarness.WaitForStatusAsync(again, jobId, JobTimeout, "succeeded");
        Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());
        var messages = JsonNode.Parse(await again.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}/events?limit=1000"))!["data"]!.AsArray()
            .Select(e => e!["message"]!.GetValue<string>()).ToArray();
        await WriteTimelineAsync(again, jobId);
        var resumedAt = messages.Select(m => Regex.Match(m, @"^resumed from step (\d+)$"))
            .Single(m => m.Success).Groups[1].Value;
        Assert.Equal(checkpointStep, int.Parse(resumedAt));
        Assert.Contains("Fine-tuning job started", messages);   // events from before the restart are still there
        Assert.Contains($"\"id\":\"{fileId}\"", await again.GetStringAsync("/v1/files"));
        Assert.Contains(jobId, await again.GetStringAsync("/v1/fine_tuning/jobs"));
        var csv = (await again.GetStringAsync($"/v1/files/{done["result_files"]![0]}/content")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Enumerable.Range(1, 48), csv.Skip(1).Select(l => int.Parse(l.Split(',')[0])));   // every step exactly once
        Assert.Contains($"\"id\":\"{done["fine_tuned_model"]}\"", await again.GetStringAsync("/v1/models"));
    }

    [ServerFact]
    public async Task AServerProcessKilledMidRunResumesTheJobWhenStartedAgainOnTheSameJobsFolder()
    {
        var jobsDir = harness.NewJobsDir();
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "SharpTune.Cli.dll"), "serve", "--model", harness.ModelDir, "--port", "0",
                     "--api-key", JobsHarness.Key, "--jobs-dir", jobsDir, "--checkpoint-every", "4", "--ft-rank", "4" })
            start.ArgumentList.Add(a);
        string jobId;
        int checkpointStep;
        using (var process = Process.Start(start)!)
        {
            try
            {
                var url = await ReadUrlAsync(process.StandardError);
                using var http = new HttpClient { BaseAddress = url };
                http.DefaultRequestHeaders.Authorization = new("Bearer", JobsHarness.Key);
                // 400 steps: the kill lands long before the end, wherever the first checkpoint is seen.
                jobId = await StartLongJobAsync(http);
                checkpointStep = await WaitForCheckpointAsync(http, jobId);
            }
            finally
            {
                process.Kill(entireProcessTree: true);   // no shutdown path runs: what is on disk must be enough
                await process.WaitForExitAsync();
            }
        }

        var gate = new StepGate(parkAt: null);   // hold the resumed job after its first step
        await using var restarted = await harness.StartAsync(jobsDir, o => o with { CheckpointEvery = 4, AfterStep = gate.AfterStep });
        using var again = JobsHarness.Http(restarted);
        var firstStep = await gate.HeldAsync(jobId);
        await WriteTimelineAsync(again, jobId);
        var messages = JsonNode.Parse(await again.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}/events?limit=1000"))!["data"]!.AsArray()
            .Select(e => e!["message"]!.GetValue<string>()).ToArray();
        var resumedFrom = messages.Select(m => Regex.Match(m, @"^resumed from step (\d+)$")).Single(m => m.Success).Groups[1].Value;
        Assert.True(int.Parse(resumedFrom) >= checkpointStep, $"resumed from {resumedFrom}, but step {checkpointStep} was checkpointed before the kill");
        Assert.Equal(int.Parse(resumedFrom) + 1, firstStep);
        var checkpoints = JsonNode.Parse(await again.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}/checkpoints?limit=100"))!["data"]!.AsArray()
            .Select(c => c!["step_number"]!.GetValue<int>()).ToArray();
        Assert.Contains(checkpointStep, checkpoints);
        Assert.Equal(checkpoints.Distinct(), checkpoints);   // a checkpoint seen before the kill is not listed twice
        await again.PostAsync($"/v1/fine_tuning/jobs/{jobId}/cancel", null);
        Assert.Equal("cancelled", (await JobsHarness.WaitForStatusAsync(again, jobId, JobTimeout, "cancelled"))["status"]!.GetValue<string>());
    }

    /// <summary>The job's events, oldest first, into the test output (where the time went when a run is slow).</summary>
    private async Task WriteTimelineAsync(HttpClient http, string jobId)
    {
        foreach (var e in JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}/events?limit=1000"))!["data"]!.AsArray().Reverse())
            output.WriteLine($"{DateTimeOffset.FromUnixTimeSeconds(e!["created_at"]!.GetValue<long>()):HH:mm:ss} {e["message"]}");
    }

    private static async Task<Uri> ReadUrlAsync(StreamReader stderr)
    {
        using var cancellation = new CancellationTokenSource(JobsHarness.HangGuard);
        while (await stderr.ReadLineAsync(cancellation.Token) is { } line)
            if (Regex.Match(line, @" at (http://\S+)/v1") is { Success: true } match) return new Uri(match.Groups[1].Value);
        throw new InvalidOperationException("sharptune serve ended without announcing its address");
    }

    /// <summary>A job of many small steps (16 examples, batch 1; 400 steps unless told) so it is still running when the test acts.</summary>
    private static async Task<string> StartLongJobAsync(HttpClient http, int epochs = 25)
    {
        var upload = await JobsHarness.UploadRawAsync(http, System.Text.Encoding.UTF8.GetBytes(JobsHarness.CompletionData(16)));
        var fileId = JsonNode.Parse(await upload.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
        var created = await http.PostAsync("/v1/fine_tuning/jobs", Json(new JsonObject
        {
            ["model"] = JobsHarness.BaseName,
            ["training_file"] = fileId,
            ["seed"] = 3,
            ["hyperparameters"] = new JsonObject { ["n_epochs"] = epochs, ["batch_size"] = 1, ["learning_rate_multiplier"] = "auto" },
        }));
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        return JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!.GetValue<string>();
    }

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

    private static async Task<int[]> MetricsStepsAsync(HttpClient http, string jobId) =>
        JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}/events?limit=1000"))!["data"]!.AsArray()
            .Where(e => e!["type"]!.GetValue<string>() == "metrics").Select(e => e!["data"]!["step"]!.GetValue<int>()).ToArray();

    private static StringContent Json(JsonObject body) => new(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json");
}
