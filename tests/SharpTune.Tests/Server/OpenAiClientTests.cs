using System.ClientModel;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;
using Msg = SharpTune.Tokenization.ChatMessage;

namespace SharpTune.Tests.Server;

/// <summary>The server through the official OpenAI .NET SDK over real loopback HTTP.</summary>
public sealed class OpenAiClientTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static readonly ChatCompletionOptions Greedy = new() { Temperature = 0, MaxOutputTokenCount = 24 };

    [ServerFact]
    public async Task GreedyChatCompletionEqualsWhatTheLibraryGeneratesForTheRenderedPrompt()
    {
        var completion = (await fixture.Chat().CompleteChatAsync(
            [new SystemChatMessage("Once upon a time"), new UserChatMessage("Tell me about Lily.")], Greedy)).Value;

        var expected = fixture.Reference([new Msg("system", "Once upon a time"), new Msg("user", "Tell me about Lily.")], 24);
        Assert.False(string.IsNullOrWhiteSpace(expected));
        Assert.Equal(expected, completion.Content[0].Text);
        Assert.Equal(ServerFixture.BaseName, completion.Model);
        Assert.StartsWith("chatcmpl-", completion.Id);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.True(completion.Usage.InputTokenCount > 5);
        Assert.InRange(completion.Usage.OutputTokenCount, 1, 24);
        Assert.Equal(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount, completion.Usage.TotalTokenCount);
        Assert.Equal(completion.Usage.OutputTokenCount == 24 ? ChatFinishReason.Length : ChatFinishReason.Stop, completion.FinishReason);
    }

    [ServerFact]
    public async Task StreamedDeltasConcatenateToTheNonStreamedText()
    {
        List<ChatMessage> messages = [new UserChatMessage("Tim had a big red ball.")];
        var whole = (await fixture.Chat().CompleteChatAsync(messages, Greedy)).Value;

        var text = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        var updates = 0;
        await foreach (var update in fixture.Chat().CompleteChatStreamingAsync(messages, Greedy))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            if (update.FinishReason is { } reason) finish = reason;
        }
        Assert.Equal(whole.Content[0].Text, text.ToString());
        Assert.Equal(whole.FinishReason, finish);
        Assert.True(updates > 3, $"expected a stream of several chunks, got {updates}");
    }

    [ServerFact]
    public async Task EachAdapterAnswersWithWhatItsAdapterProducesAndTheBaseStaysIntact()
    {
        var prompt = new Msg("user", "The little dog");
        var outputs = new Dictionary<string, string>();
        // Interleave the models so the server must switch adapters back and forth.
        foreach (var model in new[] { "tiny-a", ServerFixture.BaseName, "tiny-b", "tiny-a" })
            outputs[model] = (await fixture.Chat(model).CompleteChatAsync([new UserChatMessage(prompt.Content)], Greedy)).Value.Content[0].Text;

        Assert.Equal(fixture.Reference([prompt], 24, "tiny-a"), outputs["tiny-a"]);
        Assert.Equal(fixture.Reference([prompt], 24, "tiny-b"), outputs["tiny-b"]);
        Assert.Equal(fixture.Reference([prompt], 24), outputs[ServerFixture.BaseName]);
        Assert.Equal(3, outputs.Values.Distinct().Count());   // the adapters really change the model, differently
    }

    [ServerFact]
    public async Task ModelsListsTheBaseAndEveryAdapter()
    {
        var client = new OpenAIModelClient(new ApiKeyCredential(ServerFixture.Key), new OpenAIClientOptions { Endpoint = fixture.Server.OpenAiEndpoint });
        var models = (await client.GetModelsAsync()).Value.Select(m => m.Id).ToList();
        Assert.Equal([ServerFixture.BaseName, "tiny-a", "tiny-b"], models);
    }

    [ServerFact]
    public async Task WrongApiKeyIsRejectedWith401()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() => fixture.Chat(key: "wrong").CompleteChatAsync([new UserChatMessage("hi")], Greedy));
        Assert.Equal(401, error.Status);
        Assert.Contains("invalid_api_key", error.GetRawResponse()!.Content.ToString());
    }

    [ServerFact]
    public async Task UnknownModelIs404ModelNotFound()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() => fixture.Chat("no-such-model").CompleteChatAsync([new UserChatMessage("hi")], Greedy));
        Assert.Equal(404, error.Status);
        Assert.Contains("model_not_found", error.GetRawResponse()!.Content.ToString());
    }
}
