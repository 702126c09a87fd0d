using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Peft.Lora;
using SharpTune.Runtime;
using SharpTune.Serving;
using SharpTune.Tests.Peft;
using SharpTune.Tests.Support;
using SharpTune.Tokenization;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace SharpTune.Tests.Serving;

/// <summary>How conversations become prompts (template, raw prompt, transcript) and loading an adapter with its template.</summary>
public sealed class LocalChatClientPromptTests
{
    private const string Stories = "models/stories260K";

    private static readonly AIChatMessage[] Conversation =
    [
        new(ChatRole.System, "You tell short stories."),
        new(ChatRole.User, "Tell me about a cat."),
    ];

    [SharedAssetFact(Stories)]
    public async Task A_chat_template_override_renders_the_conversation_without_adding_special_tokens_twice()
    {
        var chatml = ChatTemplate.BuiltIn("chatml");
        using var client = LocalChatClient.Load(TestAssets.Stories260K, options: new LocalChatClientOptions { ChatTemplate = chatml });
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var rendered = chatml.Render([new("system", "You tell short stories."), new("user", "Tell me about a cat.")], addGenerationPrompt: true);
        Assert.EndsWith("<|im_start|>assistant\n", rendered);
        var ids = tokenizer.Encode(rendered, addSpecialTokens: false);

        var response = await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 20 });

        var model = (CausalLanguageModel)client.GetService(typeof(CausalLanguageModel))!;
        var expected = new TextGenerator(model, tokenizer).GenerateFromIds([ids], new GenerationOptions { Temperature = 0, MaxNewTokens = 20 })[0];
        Assert.Equal(ids.Count, response.Usage!.InputTokenCount);
        Assert.Equal(expected.Text, response.Text);
    }

    [SharedAssetFact(Stories)]
    public async Task A_user_message_through_a_template_equals_sharptune_generate_chat()
    {
        using var client = LocalChatClient.Load(TestAssets.Stories260K, options: new LocalChatClientOptions { ChatTemplate = ChatTemplate.BuiltIn("chatml") });
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Once upon a time")],
            new ChatOptions { Temperature = 0.8f, Seed = 7, MaxOutputTokens = 20 });
        var cli = SharpTuneCli.Generate("Once upon a time", "--chat", "--chat-template", "chatml", "--temperature", "0.8", "--seed", "7", "--max-tokens", "20");
        Assert.True(response.Text.Length > 10, response.Text);
        Assert.Equal(cli, response.Text);
    }

    [SharedAssetFact(Stories)]
    public void Without_a_template_a_conversation_becomes_a_role_transcript_that_stops_at_the_next_user_turn()
    {
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var builder = new ChatPromptBuilder(tokenizer, template: null);

        var prompt = builder.Build(Conversation);

        const string transcript = "System: You tell short stories.\nUser: Tell me about a cat.\nAssistant:";
        Assert.Equal(transcript, ChatPromptBuilder.Transcript([new("system", "You tell short stories."), new("user", "Tell me about a cat.")]));
        Assert.Equal(tokenizer.Encode(transcript, addSpecialTokens: true), prompt.Ids);
        Assert.Equal(["\nUser:"], prompt.ImpliedStops);

        var single = builder.Build([new AIChatMessage(ChatRole.User, "Once upon a time")]);
        Assert.Equal([1, 403, 407, 261, 378], single.Ids);   // REFERENCE.json: llama2.c's encoding with BOS
        Assert.Empty(single.ImpliedStops);
    }

    [SharedAssetFact(Stories)]
    public async Task An_adapter_folder_is_applied_with_the_chat_template_stored_beside_it()
    {
        using var dir = new TempDir();
        TorchRuntime.EnsureInitialised();
        var tokenizer = HfTokenizer.FromDirectory(TestAssets.Stories260K);
        var greedy = new GenerationOptions { Temperature = 0, MaxNewTokens = 30 };

        // Reference: the adapter applied by hand to a separately loaded model.
        using var model = PretrainedModel.Load(TestAssets.Stories260K);
        var baseText = new TextGenerator(model, tokenizer).Generate(["Once upon a time"], greedy)[0].Text;
        var adapter = new LoraAdapter(new LoraConfig { R = 4, LoraAlpha = 8 });
        adapter.Inject(model);
        LoraTestSupport.Randomize(adapter, seed: 3);
        model.eval();
        PeftAdapters.Save(adapter, dir.Path, TestAssets.Stories260K);
        // A template that keeps only the message text, behind BOS: the prompt equals the raw prompt's ids.
        File.WriteAllText(dir.File("chat_template.jinja"), "{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}");
        var adaptedText = new TextGenerator(model, tokenizer).Generate(["Once upon a time"], greedy)[0].Text;
        Assert.NotEqual(baseText, adaptedText);

        using var client = LocalChatClient.Load(TestAssets.Stories260K, dir.Path);
        var response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Once upon a time")], new ChatOptions { Temperature = 0, MaxOutputTokens = 30 });

        Assert.Equal("custom", client.ChatTemplate!.Name);
        Assert.IsType<LoraAdapter>(client.Adapter);
        Assert.Equal(dir.Path.Split('/')[^1], client.Metadata.DefaultModelId);
        Assert.Equal(adaptedText, response.Text);
    }

    [SharedAssetFact(Stories)]
    public async Task Registers_through_ChatClientBuilder_in_dependency_injection()
    {
        var services = new ServiceCollection();
        services.AddChatClient(_ => LocalChatClient.Load(TestAssets.Stories260K, options: new LocalChatClientOptions { DefaultTemperature = 0 }))
            .UseLogging();
        await using var provider = services.AddLogging().BuildServiceProvider();

        var chat = provider.GetRequiredService<IChatClient>();
        var response = await chat.GetResponseAsync("Once upon a time", new ChatOptions { MaxOutputTokens = 10 });

        Assert.Equal(10, response.Usage!.OutputTokenCount);
        Assert.Equal("sharptune", chat.GetService<ChatClientMetadata>()!.ProviderName);
    }
}
