using System.ClientModel;
using System.Net.Http.Headers;
using OpenAI;
using OpenAI.Chat;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Server;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using TorchSharp;

namespace SharpTune.Tests.Server;

/// <summary>
/// One real server on loopback over a copy of stories260K (real weights and tokenizer, so it writes real text) with
/// two LoRA adapters whose B matrices are random, so each changes the output differently. Shared by a test class.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public const string Key = "test-key-123";
    public const string BaseName = "stories260K";

    private readonly TempDir temp = new();

    public RunningServer Server { get; private set; } = null!;
    public string ModelDir => Path.Combine(temp.Path, BaseName);
    public string AdapterDir(string name) => Path.Combine(temp.Path, "adapters", name);
    public Uri Url => Server.Url;

    /// <summary>
    /// The shared server's engine gate (see <see cref="ServerOptions.EngineGate"/>): null lets the engine run freely; a
    /// test sets it to hold admission or decoding at an exact point, and clears it in a finally.
    /// </summary>
    public Func<EngineGateState, bool>? Gate { get; set; }

    public static bool Available => Directory.Exists(TestAssets.Stories260K);

    public async Task InitializeAsync()
    {
        if (!Available) return;
        TestAssets.CopyStories260K(ModelDir);
        CreateAdapter(ModelDir, AdapterDir("tiny-a"), seed: 11);
        CreateAdapter(ModelDir, AdapterDir("tiny-b"), seed: 22);
        Server = await SharpTuneServer.StartAsync(Options());
    }

    /// <summary>The options of the shared server; tests starting their own server adjust a copy.</summary>
    public ServerOptions Options() => new()
    {
        ModelDir = ModelDir,
        Port = 0,
        ApiKeys = [Key],
        Adapters = new Dictionary<string, string> { ["tiny-a"] = AdapterDir("tiny-a"), ["tiny-b"] = AdapterDir("tiny-b") },
        MaxBodyBytes = 16 * 1024,
        MaxBatchSize = 8,
        BatchWindow = TimeSpan.FromMilliseconds(20),
        EngineGate = state => Gate?.Invoke(state) ?? true,
    };

    public async Task DisposeAsync()
    {
        if (Server is not null) await Server.DisposeAsync();
        temp.Dispose();
    }

    public ChatClient Chat(string model = BaseName, string key = Key) =>
        new(model, new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = Server.OpenAiEndpoint, NetworkTimeout = TimeSpan.FromMinutes(5) });

    public HttpClient Http(string? key = Key)
    {
        var client = new HttpClient { BaseAddress = Url, Timeout = TimeSpan.FromMinutes(5) };
        if (key is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    /// <summary>
    /// What the library itself generates, greedily, for a chat rendered in the server's transcript format (stories260K
    /// has no chat template), with the adapter in <paramref name="adapter"/> applied if given.
    /// </summary>
    public string Reference(IReadOnlyList<SharpTune.Tokenization.ChatMessage> messages, int maxTokens, string? adapter = null)
    {
        using var model = PretrainedModel.Load(ModelDir);
        if (adapter is not null) PeftAdapters.Load(model, AdapterDir(adapter));
        var tokenizer = HfTokenizer.FromDirectory(ModelDir);
        var ids = tokenizer.Encode(ChatPromptFormat.RenderTranscript(messages), addSpecialTokens: true);
        return new TextGenerator(model, tokenizer)
            .GenerateFromIds([ids], new GenerationOptions { Temperature = 0, MaxNewTokens = maxTokens }, ["\nUser:"])[0].Text;
    }

    /// <summary>
    /// Saves in <paramref name="adapterDir"/> a rank-4 LoRA adapter for the model in <paramref name="modelDir"/>, its B
    /// matrices random (seeded), so it changes the model's output.
    /// </summary>
    public static void CreateAdapter(string modelDir, string adapterDir, long seed)
    {
        using var model = PretrainedModel.Load(modelDir);
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = null });
        // Seeded before injection too: lora_A's Kaiming draw would otherwise depend on whatever the process drew before
        // (the test order), and an unlucky draw can leave an adapter's greedy text equal to the base's.
        torch.manual_seed(seed);
        adapter.Inject(model);
        using (torch.no_grad())
            foreach (var (key, tensor) in adapter.AdapterStateDict())
                if (key.Contains("lora_B")) tensor.copy_(torch.randn_like(tensor) * 0.5);
        PeftAdapters.Save(adapter, adapterDir, BaseName);
    }
}

/// <summary>A fact that skips visibly when stories260K is absent (the fixture then starts nothing).</summary>
public sealed class ServerFactAttribute : FactAttribute
{
    public ServerFactAttribute()
    {
        if (!ServerFixture.Available) Skip = $"shared asset absent: {TestAssets.Stories260K}";
    }
}
