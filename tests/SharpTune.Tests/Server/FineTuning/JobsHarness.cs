using System.ClientModel;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using OpenAI;
using SharpTune.Generation;
using SharpTune.Jobs;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Server;
using SharpTune.Server.FineTuning;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;

namespace SharpTune.Tests.Server.FineTuning;

/// <summary>
/// Starts real servers on loopback over a copy of stories260K with the jobs API on, each test with its own jobs
/// folder (or a reused one, to restart over it), and talks to them with the OpenAI SDK or raw HTTP.
/// </summary>
public sealed class JobsHarness : IDisposable
{
    public const string Key = "jobs-key-1";
    public const string OtherKey = "jobs-key-2";
    public const string BaseName = "stories260K";

    private readonly TempDir temp = new();

    public JobsHarness()
    {
        if (!ServerFixture.Available) return;
        TestAssets.CopyStories260K(ModelDir);
    }

    public string ModelDir => Path.Combine(temp.Path, BaseName);

    /// <summary>A fresh jobs folder.</summary>
    public string NewJobsDir() => Path.Combine(temp.Path, "jobs-" + Guid.NewGuid().ToString("N")[..8]);

    public Task<RunningServer> StartAsync(string jobsDir, Func<FineTuningServerOptions, FineTuningServerOptions>? configure = null,
        long maxBodyBytes = 64 * 1024, string? chatTemplate = null, Func<ServerOptions, ServerOptions>? server = null)
    {
        var ft = new FineTuningServerOptions { JobsDir = jobsDir, CheckpointEvery = 2, LoraRank = 4, MaxUploadBytes = 32 * 1024 };
        var options = new ServerOptions
        {
            ModelDir = ModelDir,
            Port = 0,
            ApiKeys = [Key, OtherKey],
            MaxBodyBytes = maxBodyBytes,
            ChatTemplate = chatTemplate,
            FineTuning = configure is null ? ft : configure(ft),
        };
        return SharpTuneServer.StartAsync(server is null ? options : server(options));
    }

    public static OpenAIClient Sdk(RunningServer server, string key = Key) =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = server.OpenAiEndpoint, NetworkTimeout = TimeSpan.FromMinutes(5) });

    public static HttpClient Http(RunningServer server, string key = Key)
    {
        var client = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    /// <summary>Prompt/completion lines teaching one fixed continuation (stories260K has no chat template).</summary>
    public static string CompletionData(int lines)
    {
        var text = new StringBuilder();
        for (var i = 0; i < lines; i++)
            text.Append(new JsonObject { ["prompt"] = $"Tom had a toy number {i}.", ["completion"] = "Lily saw a big red ball." }.ToJsonString()).Append('\n');
        return text.ToString();
    }

    /// <summary>OpenAI preference lines (input + preferred_output + non_preferred_output).</summary>
    public static string PreferenceData(int lines)
    {
        var text = new StringBuilder();
        for (var i = 0; i < lines; i++)
            text.Append(new JsonObject
            {
                ["input"] = new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"Story {i}" }) },
                ["preferred_output"] = new JsonArray(new JsonObject { ["role"] = "assistant", ["content"] = "Lily was happy." }),
                ["non_preferred_output"] = new JsonArray(new JsonObject { ["role"] = "assistant", ["content"] = "Tom was sad." }),
            }.ToJsonString()).Append('\n');
        return text.ToString();
    }

    /// <summary>Uploads <paramref name="content"/> as multipart with purpose fine-tune over raw HTTP.</summary>
    public static async Task<HttpResponseMessage> UploadRawAsync(HttpClient http, byte[] content, string filename = "train.jsonl")
    {
        using var form = new MultipartFormDataContent
        {
            { new StringContent("fine-tune"), "purpose" },
            { new ByteArrayContent(content), "file", filename },
        };
        return await http.PostAsync("/v1/files", form);
    }

    /// <summary>Fails a test instead of hanging when what it waits for never happens; not a speed limit.</summary>
    public static readonly TimeSpan HangGuard = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Polls the job until it reaches <paramref name="status"/> (or a final status); throws when it has not within
    /// <paramref name="timeout"/>.
    /// </summary>
    public static async Task<JsonObject> WaitForStatusAsync(HttpClient http, string jobId, TimeSpan timeout, params string[] status)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var job = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}"))!.AsObject();
            var now = job["status"]!.GetValue<string>();
            if (status.Contains(now) || JobStatus.IsFinal(now)) return job;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"job {jobId} is still {now} after {timeout}, waiting for {string.Join(" or ", status)}");
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// What the library generates greedily for <paramref name="prompt"/> with the adapter folder applied, the chat rendered
    /// as the server renders it: with the built-in <paramref name="chatTemplate"/>, else in the transcript format.
    /// </summary>
    public string Reference(string prompt, int maxTokens, string adapterDir, string? chatTemplate = null)
    {
        using var model = PretrainedModel.Load(ModelDir);
        PeftAdapters.Load(model, adapterDir);
        var tokenizer = HfTokenizer.FromDirectory(ModelDir);
        var format = chatTemplate is null ? ChatPromptFormat.Transcript : ChatPromptFormat.FromTemplate(ChatTemplate.BuiltIn(chatTemplate));
        var ids = format.Encode([new ChatMessage("user", prompt)], tokenizer);
        return new TextGenerator(model, tokenizer)
            .GenerateFromIds([ids], new GenerationOptions { Temperature = 0, MaxNewTokens = maxTokens }, format.ImpliedStops(tokenizer))[0].Text;
    }

    public void Dispose() => temp.Dispose();
}

/// <summary>
/// Holds a job's training thread after a chosen step (through <see cref="FineTuningServerOptions.AfterStep"/>) until the
/// job is cancelled, paused or the server stops, so a test acts at an exact step however fast or slow the machine is.
/// </summary>
public sealed class StepGate(int? parkAt)
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, System.Threading.Channels.Channel<int>> parked = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> heldOnce = new();

    /// <summary>The step after which jobs are held; null holds each job after the first step it runs (e.g. after a resume).</summary>
    public int? ParkAt { get; set; } = parkAt;

    /// <summary>The hook to give the server.</summary>
    public void AfterStep(string jobId, int step, CancellationToken stop)
    {
        if (ParkAt is { } at ? step != at : !heldOnce.TryAdd(jobId, true)) return;
        Channel(jobId).Writer.TryWrite(step);
        if (!stop.WaitHandle.WaitOne(JobsHarness.HangGuard))
            throw new TimeoutException($"job {jobId} was held after step {step} and never stopped");
    }

    /// <summary>The step of the job's next hold (each hold is reported once).</summary>
    public Task<int> HeldAsync(string jobId) => Channel(jobId).Reader.ReadAsync().AsTask().WaitAsync(JobsHarness.HangGuard);

    private System.Threading.Channels.Channel<int> Channel(string jobId) =>
        parked.GetOrAdd(jobId, _ => System.Threading.Channels.Channel.CreateUnbounded<int>());
}
