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
        Directory.CreateDirectory(ModelDir);
        foreach (var file in Directory.GetFiles(TestAssets.Stories260K))
            File.Copy(file, Path.Combine(ModelDir, Path.GetFileName(file)));
    }

    public string ModelDir => Path.Combine(temp.Path, BaseName);

    /// <summary>A fresh jobs folder.</summary>
    public string NewJobsDir() => Path.Combine(temp.Path, "jobs-" + Guid.NewGuid().ToString("N")[..8]);

    public Task<RunningServer> StartAsync(string jobsDir, Func<FineTuningServerOptions, FineTuningServerOptions>? configure = null,
        long maxBodyBytes = 64 * 1024, string? chatTemplate = null)
    {
        var ft = new FineTuningServerOptions { JobsDir = jobsDir, CheckpointEvery = 2, LoraRank = 4, MaxUploadBytes = 32 * 1024 };
        return SharpTuneServer.StartAsync(new ServerOptions
        {
            ModelDir = ModelDir,
            Port = 0,
            ApiKeys = [Key, OtherKey],
            MaxBodyBytes = maxBodyBytes,
            ChatTemplate = chatTemplate,
            FineTuning = configure is null ? ft : configure(ft),
        });
    }

    public static OpenAIClient Sdk(RunningServer server, string key = Key) =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = server.OpenAiEndpoint, NetworkTimeout = TimeSpan.FromSeconds(60) });

    public static HttpClient Http(RunningServer server, string key = Key)
    {
        var client = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromSeconds(60) };
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

    /// <summary>Polls the job until it reaches <paramref name="status"/> (or a final status), within <paramref name="timeout"/>.</summary>
    public static async Task<JsonObject> WaitForStatusAsync(HttpClient http, string jobId, TimeSpan timeout, params string[] status)
    {
        var deadline = DateTime.UtcNow + timeout;
        JsonObject job;
        do
        {
            job = JsonNode.Parse(await http.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}"))!.AsObject();
            var now = job["status"]!.GetValue<string>();
            if (status.Contains(now) || JobStatus.IsFinal(now)) return job;
            await Task.Delay(100);
        } while (DateTime.UtcNow < deadline);
        return job;
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
            .GenerateFromIds([ids], new GenerationOptions { Temperature = 0, MaxNewTokens = maxTokens }, format.ImpliedStops)[0].Text;
    }

    public void Dispose() => temp.Dispose();
}
