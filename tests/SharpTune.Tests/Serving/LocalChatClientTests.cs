using Microsoft.Extensions.AI;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Runtime;
using SharpTune.Serving;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using ChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace SharpTune.Tests.Serving;

/// <summary>The stories260K model loaded once through <see cref="LocalChatClient.Load"/>, plus an independent generator.</summary>
public sealed class Stories260KChatFixture : IDisposable
{
    public Stories260KChatFixture()
    {
        if (!Directory.Exists(TestAssets.Stories260K)) return;
        Client = LocalChatClient.Load(TestAssets.Stories260K);
        TorchRuntime.EnsureInitialised();
        ReferenceModel = PretrainedModel.Load(TestAssets.Stories260K);
        Reference = new TextGenerator(ReferenceModel, HfTokenizer.FromDirectory(TestAssets.Stories260K));
    }

    public LocalChatClient Client { get; } = null!;
    public CausalLanguageModel ReferenceModel { get; } = null!;
    public TextGenerator Reference { get; } = null!;

    public void Dispose()
    {
        Client?.Dispose();
        ReferenceModel?.Dispose();
    }
}

public sealed class LocalChatClientTests(Stories260KChatFixture fixture) : IClassFixture<Stories260KChatFixture>
{
    private const string Prompt = "Once upon a time";
    private const string Stories = "models/stories260K";
    private LocalChatClient Client => fixture.Client;

    private static ChatMessage[] User(string text) => [new(ChatRole.User, text)];

    private string ReferenceText(GenerationOptions options, params string[] stops) =>
        fixture.Reference.Generate([Prompt], options, stops)[0].Text;

    private static string CliGenerate(params string[] args) => SharpTuneCli.Generate(Prompt, args);

    [SharedAssetFact(Stories)]
    public async Task Greedy_reply_equals_sharptune_generate_and_the_text_generator()
    {
        var response = await Client.GetResponseAsync(User(Prompt), new ChatOptions { Temperature = 0, MaxOutputTokens = 40 });

        Assert.Equal(CliGenerate("--temperature", "0", "--max-tokens", "40"), response.Text);
        Assert.Equal(ReferenceText(new GenerationOptions { Temperature = 0, MaxNewTokens = 40 }), response.Text);
        Assert.True(response.Text.Length > 20, response.Text);
        // Without a chat template a lone user message is the raw prompt: REFERENCE.json's ids 1 403 407 261 378 (BOS first).
        Assert.Equal(5, response.Usage!.InputTokenCount);
        Assert.Equal(45, response.Usage.TotalTokenCount);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
        Assert.Equal("stories260K", response.ModelId);
    }

    [SharedAssetFact(Stories)]
    public async Task Seeded_sampling_equals_sharptune_generate_with_the_same_seed()
    {
        var options = new ChatOptions { Temperature = 0.8f, TopP = 0.9f, TopK = 40, Seed = 1234, MaxOutputTokens = 40 };
        var response = await Client.GetResponseAsync(User(Prompt), options);

        Assert.Equal(CliGenerate("--temperature", "0.8", "--top-p", "0.9", "--top-k", "40", "--seed", "1234", "--max-tokens", "40"), response.Text);
        Assert.Equal(response.Text, (await Client.GetResponseAsync(User(Prompt), options)).Text);
        options.Seed = 99;
        Assert.NotEqual(response.Text, (await Client.GetResponseAsync(User(Prompt), options)).Text);
    }

    [SharedAssetFact(Stories)]
    public async Task Presence_and_frequency_penalties_reach_the_generator()
    {
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 40, PresencePenalty = 1.5f, FrequencyPenalty = 0.5f };
        var response = await Client.GetResponseAsync(User(Prompt), options);

        Assert.Equal(ReferenceText(new GenerationOptions { Temperature = 0, MaxNewTokens = 40, PresencePenalty = 1.5, FrequencyPenalty = 0.5 }), response.Text);
        Assert.NotEqual(ReferenceText(new GenerationOptions { Temperature = 0, MaxNewTokens = 40 }), response.Text);
        foreach (var bad in new ChatOptions[] { new() { PresencePenalty = 2.5f }, new() { FrequencyPenalty = float.NaN } })
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Client.GetResponseAsync(User(Prompt), bad));
    }

    [SharedAssetFact(Stories)]
    public async Task Streaming_pieces_concatenate_to_the_non_streaming_text_and_end_with_usage()
    {
        var options = new ChatOptions { Temperature = 0.7f, Seed = 5, MaxOutputTokens = 30 };
        var whole = await Client.GetResponseAsync(User(Prompt), options);

        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in Client.GetStreamingResponseAsync(User(Prompt), options)) updates.Add(update);

        Assert.True(updates.Count(u => u.Text.Length > 0) > 5, "text arrives in many pieces, not at the end");
        Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
        var usage = updates.SelectMany(u => u.Contents).OfType<UsageContent>().Single().Details;
        Assert.Equal(whole.Usage!.OutputTokenCount, usage.OutputTokenCount);
        Assert.Equal(5, usage.InputTokenCount);
        Assert.Equal(ChatFinishReason.Length, updates[^1].FinishReason);
        Assert.Equal(whole.Text, updates.ToChatResponse().Text);
        // Ids and times on the message and on every update, as OpenAI's IChatClient sets them.
        Assert.Equal(whole.ResponseId, whole.Messages[0].MessageId);
        Assert.Equal(whole.CreatedAt, whole.Messages[0].CreatedAt);
        Assert.All(updates, u => Assert.Equal(updates[0].CreatedAt, Assert.NotNull(u.CreatedAt)));
    }

    [SharedAssetFact(Stories)]
    public async Task Max_output_tokens_and_stop_sequences_are_honoured()
    {
        var limited = await Client.GetResponseAsync(User(Prompt), new ChatOptions { Temperature = 0, MaxOutputTokens = 7 });
        Assert.Equal(7, limited.Usage!.OutputTokenCount);
        Assert.Equal(ChatFinishReason.Length, limited.FinishReason);

        var full = ReferenceText(new GenerationOptions { Temperature = 0, MaxNewTokens = 40 });
        var stop = full.Substring(12, 4);   // a string the greedy continuation is known to contain
        var stopped = await Client.GetResponseAsync(User(Prompt), new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = [stop] });
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);

        var streamed = new List<string>();
        await foreach (var u in Client.GetStreamingResponseAsync(User(Prompt), new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = [stop] }))
            streamed.Add(u.Text);
        Assert.Equal(stopped.Text, string.Concat(streamed));
    }

    [SharedAssetFact(Stories)]
    public async Task Cancellation_stops_streaming_generation_and_releases_the_model()
    {
        using var cancel = new CancellationTokenSource();
        var produced = 0;
        var received = 0;
        // Room for 500 tokens: the story would go on far past the cancellation point.
        var options = new ChatOptions { Temperature = 0.9f, Seed = 1, MaxOutputTokens = 500 };
        Client.PieceProduced = () => { if (++produced == 3) cancel.Cancel(); };
        try
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (var update in Client.GetStreamingResponseAsync(User(Prompt), options, cancel.Token)) received++;
            });
        }
        finally { Client.PieceProduced = null; }
        // The generator checks the token before each step: at most one more piece after the third.
        Assert.InRange(produced, 3, 4);
        Assert.InRange(received, 0, 3);

        using var already = new CancellationTokenSource();
        already.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Client.GetResponseAsync(User(Prompt), options, already.Token));

        // The model gate was released: the next request runs to completion.
        var after = await Client.GetResponseAsync(User(Prompt), new ChatOptions { Temperature = 0, MaxOutputTokens = 3 });
        Assert.Equal(3, after.Usage!.OutputTokenCount);
    }

    [SharedAssetFact(Stories)]
    public async Task Concurrent_requests_are_serialised_and_give_the_sequential_results()
    {
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 25 };
        var expected = ReferenceText(new GenerationOptions { Temperature = 0, MaxNewTokens = 25 });
        var replies = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Client.GetResponseAsync(User(Prompt), options)));
        Assert.All(replies, r => Assert.Equal(expected, r.Text));
    }

    [SharedAssetFact(Stories)]
    public void Metadata_and_services_follow_the_interface_contract()
    {
        IChatClient client = Client;
        var metadata = client.GetService<ChatClientMetadata>();
        Assert.Equal("sharptune", metadata!.ProviderName);
        Assert.Equal("stories260K", metadata.DefaultModelId);
        Assert.Same(Client, client.GetService<IChatClient>());
        Assert.Same(Client, client.GetService<LocalChatClient>());
        Assert.NotNull(client.GetService<HfTokenizer>());
        Assert.Null(client.GetService<IChatClient>("some-key"));
        Assert.Null(client.GetService<string>());
        Assert.Throws<ArgumentNullException>(() => client.GetService(null!));
    }

    [SharedAssetFact(Stories)]
    public async Task Unsupported_requests_fail_clearly()
    {
        var tool = AIFunctionFactory.Create(() => 1, "one");
        var error = await Assert.ThrowsAsync<NotSupportedException>(() => Client.GetResponseAsync(User(Prompt), new ChatOptions { Tools = [tool] }));
        Assert.Contains("Tools", error.Message);
        var image = new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1, 2 }, "image/png")]);
        Assert.Contains("DataContent", (await Assert.ThrowsAsync<NotSupportedException>(() => Client.GetResponseAsync([image]))).Message);
        await Assert.ThrowsAsync<ArgumentException>(() => Client.GetResponseAsync(User(Prompt), new ChatOptions { ModelId = "other" }));
        await Assert.ThrowsAsync<ArgumentException>(() => Client.GetResponseAsync([]));
        // Out-of-range sampling is an argument error, not a failure inside libtorch's sampler.
        foreach (var bad in new ChatOptions[] { new() { Temperature = float.NaN }, new() { Temperature = -1 }, new() { TopP = -0.5f }, new() { TopP = 1.5f }, new() { TopK = 0 } })
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Client.GetResponseAsync(User(Prompt), bad));
        // More new tokens than an int holds once the prompt is added: the context error, not an overflowed tensor size.
        var tooMany = await Assert.ThrowsAsync<ContextLengthException>(() => Client.GetResponseAsync(User(Prompt), new ChatOptions { MaxOutputTokens = int.MaxValue }));
        Assert.Contains("ChatOptions.MaxOutputTokens", tooMany.Message);   // this API's terms, not the generator's max_new_tokens
    }

    [SharedAssetFact(Stories)]
    public async Task Without_max_output_tokens_a_long_prompt_gets_the_room_the_context_leaves()
    {
        var context = Client.GetService<SharpTune.Models.CausalLanguageModel>()!.Config.ContextLength;
        var tokenizer = Client.GetService<HfTokenizer>()!;
        var words = string.Join(" ", Enumerable.Repeat("Tom saw a big dog.", 200));
        var text = words[..words.IndexOf(' ', 0)];
        // A prompt that leaves fewer tokens than the default 256 but some room: the reply takes the room, as OpenAI does.
        for (var cut = words.Length; cut > 0; cut = words.LastIndexOf(' ', cut - 1))
            if (tokenizer.Encode(words[..cut], addSpecialTokens: true).Count < context - 20) { text = words[..cut]; break; }
        var reply = await Client.GetResponseAsync(User(text), new ChatOptions { Temperature = 0 });
        Assert.InRange(reply.Usage!.InputTokenCount!.Value, context - 256, context - 1);
        Assert.True(reply.Usage.InputTokenCount + reply.Usage.OutputTokenCount <= context);
    }

    /// <summary>
    /// Disposing the client while one call holds the model and others wait for it: the waiting ones (plain and
    /// streaming) get an ObjectDisposedException naming the client instead of hanging, and the model is released only
    /// after the running call leaves it.
    /// </summary>
    [SharedAssetFact("models/stories260K")]
    public async Task DisposingGivesCallersWaitingForTheModelAnObjectDisposedExceptionAndWaitsForTheCallHoldingIt()
    {
        var client = LocalChatClient.Load(TestAssets.Stories260K);
        var holder = await client.EnterAsync(CancellationToken.None);   // another call running on the model
        var waiter = client.GetResponseAsync(User("Once upon a time"), new ChatOptions { MaxOutputTokens = 4 });
        var streaming = Task.Run(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(User("Once upon a time"), new ChatOptions { MaxOutputTokens = 4 })) { }
        });
        await Task.Delay(200);
        Assert.False(waiter.IsCompleted);
        Assert.False(streaming.IsCompleted);

        var disposing = Task.Run(client.Dispose);
        Assert.Contains(nameof(LocalChatClient), (await Assert.ThrowsAsync<ObjectDisposedException>(() => waiter.WaitAsync(TimeSpan.FromSeconds(30)))).ObjectName);
        Assert.Contains(nameof(LocalChatClient), (await Assert.ThrowsAsync<ObjectDisposedException>(() => streaming.WaitAsync(TimeSpan.FromSeconds(30)))).ObjectName);
        Assert.False(disposing.IsCompleted, "Dispose must wait for the running call before releasing the model");

        holder.Dispose();
        await disposing.WaitAsync(TimeSpan.FromSeconds(30));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => client.GetResponseAsync(User("Tom")));
    }
}
