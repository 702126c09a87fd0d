using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using SharpTune.Server;

namespace SharpTune.Tests.Server;

/// <summary>
/// The server's prefix cache seen from clients: OpenAI's SDK reads <c>usage.prompt_tokens_details.cached_tokens</c>, a
/// conversation's second turn reuses the first turn's prompt, replies are the same text as with the cache off, and
/// Prometheus counts the tokens looked up and reused.
/// </summary>
public sealed class PrefixCachingServingTests
{
    private static async Task<RunningServer> Start(long prefixCacheBytes) => await SharpTuneServer.StartAsync(new ServerOptions
    {
        ModelDir = TestAssets.Stories260K,
        Port = 0,
        PrefixCacheBytes = prefixCacheBytes,
    });

    private static ChatClient Chat(RunningServer server) =>
        new("stories260K", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = server.OpenAiEndpoint, NetworkTimeout = TimeSpan.FromMinutes(5) });

    private static readonly ChatCompletionOptions Greedy = new() { Temperature = 0, MaxOutputTokenCount = 16 };

    [ServerFact]
    public async Task TheOpenAiSdkSeesCachedTokensAndTheRepliesAreAsWithTheCacheOff()
    {
        List<ChatMessage> firstTurn = [new UserChatMessage("Lily went to the park.")];
        string[] offReplies;
        await using (var off = await Start(0))
        {
            var client = Chat(off);
            var once = (await client.CompleteChatAsync(firstTurn, Greedy)).Value;
            var twice = (await client.CompleteChatAsync(firstTurn, Greedy)).Value;
            Assert.Equal(0, once.Usage.InputTokenDetails.CachedTokenCount);
            Assert.Equal(0, twice.Usage.InputTokenDetails.CachedTokenCount);
            var secondTurn = firstTurn.Append(new AssistantChatMessage(once.Content[0].Text)).Append(new UserChatMessage("What did she see?")).ToList();
            offReplies = [once.Content[0].Text, (await client.CompleteChatAsync(secondTurn, Greedy)).Value.Content[0].Text];
        }

        await using var on = await Start(64L << 20);
        var chat = Chat(on);
        var first = (await chat.CompleteChatAsync(firstTurn, Greedy)).Value;
        Assert.Equal(0, first.Usage.InputTokenDetails.CachedTokenCount);
        var repeated = (await chat.CompleteChatAsync(firstTurn, Greedy)).Value;
        Assert.Equal(first.Usage.InputTokenCount - 1, repeated.Usage.InputTokenDetails.CachedTokenCount);
        Assert.Equal(offReplies[0], first.Content[0].Text);
        Assert.Equal(offReplies[0], repeated.Content[0].Text);

        // The second turn renders the first turn's prompt again, then the reply and the new message: at least the
        // first prompt is reused (the reply's tokens too, when the transcript renders them as they were generated).
        var second = firstTurn.Append(new AssistantChatMessage(first.Content[0].Text)).Append(new UserChatMessage("What did she see?")).ToList();
        var next = (await chat.CompleteChatAsync(second, Greedy)).Value;
        Assert.Equal(offReplies[1], next.Content[0].Text);
        Assert.True(next.Usage.InputTokenDetails.CachedTokenCount >= first.Usage.InputTokenCount - 1,
            $"the second turn reused {next.Usage.InputTokenDetails.CachedTokenCount} of {next.Usage.InputTokenCount} prompt tokens");

        using var http = new HttpClient { BaseAddress = on.Url };
        var metrics = PrometheusText.Parse(await http.GetStringAsync("/metrics"));
        Assert.Equal(first.Usage.InputTokenCount * 2 + next.Usage.InputTokenCount, metrics["sharptune_prefix_cache_queries_total"]);
        Assert.Equal(repeated.Usage.InputTokenDetails.CachedTokenCount + next.Usage.InputTokenDetails.CachedTokenCount,
            metrics["sharptune_prefix_cache_hits_total"]);
    }

    [ServerFact]
    public async Task StreamedUsageAndTheResponsesApiReportCachedTokens()
    {
        await using var server = await Start(64L << 20);
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
        var body = new JsonObject { ["model"] = "stories260K", ["prompt"] = "Once upon a time", ["max_tokens"] = 8, ["temperature"] = 0 };
        using (var warm = await http.PostAsJsonAsync("/v1/completions", body))
            Assert.Equal(HttpStatusCode.OK, warm.StatusCode);

        body["stream"] = true;
        body["stream_options"] = new JsonObject { ["include_usage"] = true };
        using var streamed = await http.PostAsJsonAsync("/v1/completions", body);
        var usage = (await streamed.Content.ReadAsStringAsync()).Split('\n')
            .Where(l => l.StartsWith("data: {", StringComparison.Ordinal)).Select(l => JsonNode.Parse(l[6..])!)
            .Single(c => c["usage"] is JsonObject)["usage"]!;
        Assert.Equal((int)usage["prompt_tokens"]! - 1, (int)usage["prompt_tokens_details"]!["cached_tokens"]!);

        var request = new JsonObject { ["model"] = "stories260K", ["input"] = "Tim had a red ball.", ["max_output_tokens"] = 16, ["temperature"] = 0 };
        JsonNode responseUsage = null!;
        for (var i = 0; i < 2; i++)
        {
            using var response = await http.PostAsJsonAsync("/v1/responses", request.DeepClone());
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            responseUsage = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["usage"]!;
        }
        Assert.Equal((int)responseUsage["input_tokens"]! - 1, (int)responseUsage["input_tokens_details"]!["cached_tokens"]!);
    }

    /// <summary>
    /// Loading or unloading an adapter empties the cache (the stored keys and values came from the weights before it);
    /// embeddings, which only read the model between decode batches, keep it.
    /// </summary>
    [ServerFact]
    public async Task AdapterSurgeryEmptiesTheCacheAndEmbeddingsKeepIt()
    {
        using var temp = new TempDir();
        var adapterDir = temp.File("lora");
        using (var model = SharpTune.Models.PretrainedModel.Load(TestAssets.Stories260K))
        {
            var adapter = new SharpTune.Peft.Lora.LoraAdapter(new SharpTune.Peft.Lora.LoraConfig { R = 2, LoraAlpha = 4 });
            adapter.Inject(model);
            SharpTune.Peft.PeftAdapters.Save(adapter, adapterDir, "stories260K");
        }
        await using var server = await Start(64L << 20);
        using var http = new HttpClient { BaseAddress = server.Url, Timeout = TimeSpan.FromMinutes(5) };
        var body = new JsonObject { ["model"] = "stories260K", ["prompt"] = "Sam and Mia found a box.", ["max_tokens"] = 4, ["temperature"] = 0 };
        async Task<int> CachedAsync()
        {
            using var response = await http.PostAsJsonAsync("/v1/completions", body.DeepClone());
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return (int)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["usage"]!["prompt_tokens_details"]!["cached_tokens"]!;
        }
        Assert.Equal(0, await CachedAsync());
        var hit = await CachedAsync();
        Assert.True(hit > 0);

        using (var embedded = await http.PostAsJsonAsync("/v1/embeddings", new JsonObject { ["model"] = "stories260K", ["input"] = "a text" }))
            Assert.Equal(HttpStatusCode.OK, embedded.StatusCode);
        Assert.Equal(hit, await CachedAsync());

        using (var load = await http.PostAsJsonAsync("/admin/adapters", new JsonObject { ["name"] = "lora", ["path"] = adapterDir }))
            Assert.Equal(HttpStatusCode.Created, load.StatusCode);
        Assert.Equal(0, await CachedAsync());
        Assert.Equal(hit, await CachedAsync());
        (await http.DeleteAsync("/admin/adapters/lora")).Dispose();
        Assert.Equal(0, await CachedAsync());
    }
}
