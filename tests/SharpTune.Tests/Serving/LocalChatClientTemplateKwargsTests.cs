using System.Text.Json;
using Microsoft.Extensions.AI;
using SharpTune.Serving;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace SharpTune.Tests.Serving;

/// <summary>
/// The in-process client's chat template variables: <c>ChatOptions.AdditionalProperties["chat_template_kwargs"]</c> per
/// request over <see cref="LocalChatClientOptions.ChatTemplateKwargs"/>, on stories260K with Qwen3's real template. The
/// prompt the model sees is checked through <c>Usage.InputTokenCount</c> against transformers' rendering (jinja2 3.1.6, see
/// <see cref="Tokenization.ChatTemplateArgumentsTests"/>) encoded by the model's tokenizer.
/// </summary>
public sealed class LocalChatClientTemplateKwargsTests
{
    private const string Prompt = "<|im_start|>user\nSummarise: the cat sat.<|im_end|>\n<|im_start|>assistant\n";
    private const string EmptyThink = "<think>\n\n</think>\n\n";
    private static readonly AIChatMessage[] Question = [new(ChatRole.User, "Summarise: the cat sat.")];

    private static int Tokens(string rendering) => HfTokenizer.FromDirectory(TestAssets.Stories260K).Encode(rendering, addSpecialTokens: false).Count;

    private static ChatOptions Options(object? kwargs) => new()
    {
        MaxOutputTokens = 1,
        Temperature = 0,
        AdditionalProperties = kwargs is null ? null : new() { [ChatTemplateArguments.FieldName] = kwargs },
    };

    [SharedAssetFact("tokenizers/qwen3")]
    public async Task Request_kwargs_in_additional_properties_override_the_clients_defaults()
    {
        var qwen3 = ChatTemplate.FromModelDirectory(TestAssets.Tokenizer("qwen3"));
        using var client = LocalChatClient.Load(TestAssets.Stories260K, options: new LocalChatClientOptions { ChatTemplate = qwen3 });
        Assert.Equal(Tokens(Prompt), (await client.GetResponseAsync(Question, Options(null))).Usage!.InputTokenCount);
        var thinkingOff = new Dictionary<string, object?> { ["enable_thinking"] = false };
        Assert.Equal(Tokens(Prompt + EmptyThink), (await client.GetResponseAsync(Question, Options(thinkingOff))).Usage!.InputTokenCount);

        using var defaults = LocalChatClient.Load(TestAssets.Stories260K,
            options: new LocalChatClientOptions { ChatTemplate = qwen3, ChatTemplateKwargs = thinkingOff });
        Assert.Equal(Tokens(Prompt + EmptyThink), (await defaults.GetResponseAsync(Question, Options(null))).Usage!.InputTokenCount);
        // As a JsonElement, the shape AdditionalProperties values take after a JSON round trip.
        var thinkingOn = JsonDocument.Parse("""{"enable_thinking": true}""").RootElement;
        Assert.Equal(Tokens(Prompt), (await defaults.GetResponseAsync(Question, Options(thinkingOn))).Usage!.InputTokenCount);

        var e = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(Question, Options(new[] { "enable_thinking" })));
        Assert.Contains("chat_template_kwargs", e.Message);
    }
}
