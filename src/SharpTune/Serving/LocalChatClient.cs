using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.AI;
using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Peft;
using SharpTune.Serving.ToolCalls;
using SharpTune.Tokenization;

namespace SharpTune.Serving;

/// <summary>
/// A local Hugging Face-layout model (optionally with a PEFT adapter) as a Microsoft.Extensions.AI <see cref="IChatClient"/>,
/// for applications that run a fine-tuned model in-process, offline.
/// </summary>
/// <remarks>
/// Prompt format: the chat template from <see cref="LocalChatClientOptions.ChatTemplate"/>, else the adapter folder's
/// (chat_template.jinja or tokenizer_config.json there), else the tokenizer's. Without any template a single user message
/// is encoded as the raw prompt with the tokenizer's special tokens (exactly as <c>sharptune generate --prompt</c>), and
/// any other conversation as a transcript "System: …\nUser: …\nAssistant: …\nAssistant:" that stops at "\nUser:".
/// Requests are served one at a time (the model is not re-entrant); concurrent callers wait their turn.
/// <para>
/// Tools (with a chat template that renders them): <c>ChatOptions.Tools</c> function declarations reach the template as
/// tools, the reply's calls — in the format the template's family writes — come back as <see cref="FunctionCallContent"/>
/// with finish reason <see cref="ChatFinishReason.ToolCalls"/>, and <see cref="FunctionResultContent"/> messages are
/// rendered as tool results, so <c>ChatClientBuilder.UseFunctionInvocation()</c> runs a tool loop in-process. A required
/// tool mode forces a call, and a JSON <c>ChatOptions.ResponseFormat</c> forces JSON valid for its schema, by
/// constrained decoding. Reasoning in &lt;think&gt; blocks comes back as <see cref="TextReasoningContent"/>.
/// </para>
/// </remarks>
public sealed class LocalChatClient : IChatClient
{
    private readonly TextGenerator generator;
    private readonly ChatPromptBuilder promptBuilder;
    private readonly LocalChatClientOptions options;
    private readonly ExclusiveModelAccess access = new(nameof(LocalChatClient));
    private readonly bool ownsModel;

    /// <summary>Wraps an already-loaded model and tokenizer; the caller keeps ownership of the model.</summary>
    public LocalChatClient(CausalLanguageModel model, HfTokenizer tokenizer, LocalChatClientOptions? options = null, IPeftAdapter? adapter = null)
        : this(model, tokenizer, options ?? new LocalChatClientOptions(), adapter,
            LoadedModel.ResolveChatTemplate(tokenizer, adapterDir: null, builtInName: null), defaultModelId: "local", ownsModel: false)
    {
    }

    private LocalChatClient(CausalLanguageModel model, HfTokenizer tokenizer, LocalChatClientOptions options, IPeftAdapter? adapter,
        ChatTemplate? resolvedTemplate, string defaultModelId, bool ownsModel)
    {
        generator = new TextGenerator(model, tokenizer);
        this.options = options;
        this.ownsModel = ownsModel;
        Adapter = adapter;
        var template = options.ChatTemplate ?? resolvedTemplate;
        if (template is not null && options.ChatTemplateKwargs is { } defaults)
            template = template.WithArguments(ChatTemplateArguments.Merge(template.Arguments, defaults));
        promptBuilder = new ChatPromptBuilder(tokenizer, template);
        Metadata = new ChatClientMetadata("sharptune", providerUri: null, defaultModelId: options.ModelId ?? defaultModelId);
    }

    /// <summary>
    /// Loads the model in <paramref name="modelDir"/> (a Hugging Face-layout folder, or a repo id already in the local hub
    /// cache) and, when given, the PEFT adapter in <paramref name="adapterDir"/> on top of it, with the chat template
    /// stored beside the adapter (as <c>sharptune train</c> writes it) unless the options override it.
    /// </summary>
    /// <exception cref="FileNotFoundException">A required file of the model or adapter folder is missing.</exception>
    /// <exception cref="InvalidOperationException">The model folder has no tokenizer.json.</exception>
    public static LocalChatClient Load(string modelDir, string? adapterDir = null, LocalChatClientOptions? options = null)
    {
        options ??= new LocalChatClientOptions();
        var loaded = LoadedModel.Load(modelDir, adapterDir, options.Dtype is null ? null : ModelFactory.ParseDtype(options.Dtype));
        try
        {
            var id = Path.GetFileName(Path.TrimEndingDirectorySeparator(adapterDir is null ? loaded.ModelDirectory : Path.GetFullPath(adapterDir)));
            return new LocalChatClient(loaded.Model, loaded.RequireTokenizer(), options, loaded.Adapter, loaded.ChatTemplate, id, ownsModel: true);
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }

    /// <summary>Provider "sharptune" and the model id.</summary>
    public ChatClientMetadata Metadata { get; }

    /// <summary>The adapter applied to the model, if any.</summary>
    public IPeftAdapter? Adapter { get; }

    /// <summary>The chat template in use; null when prompts use the plain fallback.</summary>
    public ChatTemplate? ChatTemplate => promptBuilder.Template;

    /// <summary>Called on the generation thread for each streamed piece (lets tests cancel at an exact point).</summary>
    internal Action? PieceProduced { get; set; }

    private string ModelId => Metadata.DefaultModelId!;

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, ChatOptions? chatOptions = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var chat = Prepare(messages, chatOptions);
        TextCompletion completion;
        using (await access.EnterAsync(cancellationToken).ConfigureAwait(false))
        {
            // Generation is CPU-bound and synchronous: keep it off the caller's thread.
            completion = await Task.Run(() => generator.GenerateFromIds([chat.Prompt], chat.Generation, chat.Stops, null, cancellationToken, chat.Grammar)[0],
                cancellationToken).ConfigureAwait(false);
        }
        var reply = new ReplyContents(chat.NewParser(), chat.ParallelCalls);
        var message = reply.Parses
            ? new Microsoft.Extensions.AI.ChatMessage(ChatRole.Assistant, ReplyContents.Merge([.. reply.Push(completion.Text), .. reply.Finish()]))
            : new Microsoft.Extensions.AI.ChatMessage(ChatRole.Assistant, completion.Text);
        // The message carries the response's id and time, as the streamed updates do (and as OpenAI's client sets them).
        var (responseId, created) = (NewResponseId(), DateTimeOffset.UtcNow);
        message.MessageId = responseId;
        message.CreatedAt = created;
        return new ChatResponse(message)
        {
            ResponseId = responseId,
            ModelId = ModelId,
            CreatedAt = created,
            FinishReason = reply.FinishReasonFor(completion.FinishReason),
            Usage = Usage(completion),
        };
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages,
        ChatOptions? chatOptions = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var chat = Prepare(messages, chatOptions);
        var (responseId, created) = (NewResponseId(), DateTimeOffset.UtcNow);
        var reply = new ReplyContents(chat.NewParser(), chat.ParallelCalls);
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        // Cancelled by the caller's token or when the consumer stops enumerating early.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var producer = Task.Run(async () =>
        {
            using (await access.EnterAsync(stop.Token).ConfigureAwait(false))
            {
                return generator.GenerateFromIds([chat.Prompt], chat.Generation, chat.Stops, (_, piece) =>
                {
                    PieceProduced?.Invoke();
                    pieces.Writer.TryWrite(piece);
                }, stop.Token, chat.Grammar)[0];
            }
        }, stop.Token);
        _ = producer.ContinueWith(t => pieces.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);

        try
        {
            await foreach (var piece in pieces.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                // Pieces may already be buffered when the caller cancels; ReadAllAsync only checks the token while waiting.
                cancellationToken.ThrowIfCancellationRequested();
                if (!reply.Parses)
                {
                    yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ResponseId = responseId, MessageId = responseId, ModelId = ModelId, CreatedAt = created };
                    continue;
                }
                // Text that may begin a tool call or close a reasoning block is held until it is known.
                foreach (var content in reply.Push(piece))
                    yield return new ChatResponseUpdate(ChatRole.Assistant, [content]) { ResponseId = responseId, MessageId = responseId, ModelId = ModelId, CreatedAt = created };
            }
            var completion = await producer.ConfigureAwait(false);
            foreach (var content in reply.Finish())
                yield return new ChatResponseUpdate(ChatRole.Assistant, [content]) { ResponseId = responseId, MessageId = responseId, ModelId = ModelId, CreatedAt = created };
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(completion))])
            {
                ResponseId = responseId,
                MessageId = responseId,
                ModelId = ModelId,
                CreatedAt = created,
                FinishReason = reply.FinishReasonFor(completion.FinishReason),
            };
        }
        finally
        {
            stop.Cancel();
            // Wait for the generation thread to leave the model before the token source is disposed.
            try { await producer.ConfigureAwait(false); }
            catch (Exception) { /* a failure already reached the reader through the channel; a cancellation is expected here */ }
        }
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return Metadata;
        if (serviceType.IsInstanceOfType(this)) return this;
        if (serviceType == typeof(CausalLanguageModel)) return generator.Model;
        if (serviceType == typeof(HfTokenizer)) return generator.Tokenizer;
        if (Adapter is not null && serviceType.IsInstanceOfType(Adapter)) return Adapter;
        return null;
    }

    /// <summary>
    /// Releases the model when this client loaded it: callers still waiting for it get an
    /// <see cref="ObjectDisposedException"/>; a running generation finishes first.
    /// </summary>
    public void Dispose() => access.Dispose(ownsModel ? generator.Model.Dispose : null);

    /// <summary>Waits for the model to be free and holds it until the result is disposed.</summary>
    internal Task<IDisposable> EnterAsync(CancellationToken cancellationToken) => access.EnterAsync(cancellationToken);

    private PreparedChat Prepare(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, ChatOptions? chatOptions)
    {
        ObjectDisposedException.ThrowIf(access.IsDisposed, this);
        var (generation, stops) = ChatOptionsMapping.Map(chatOptions, options, ModelId, generator.Model.Config.Generation);
        var tools = ChatContentMapping.Tools(chatOptions);
        var prompt = promptBuilder.Build(messages, tools, chatOptions?.Instructions, ChatOptionsMapping.TemplateArguments(chatOptions));
        // MaxOutputTokens unset: the default, capped by the room the prompt leaves, as the server and OpenAI cap it.
        var context = TokenGenerator.PromptContext(generator.Model);
        if (chatOptions?.MaxOutputTokens is null && context - prompt.Ids.Count is var room && room >= 1)
            generation = generation with { MaxNewTokens = Math.Min(generation.MaxNewTokens, room) };
        if ((long)prompt.Ids.Count + generation.MaxNewTokens > context)   // in this API's terms, before the generator's
            throw new ContextLengthException(chatOptions?.MaxOutputTokens is { } asked
                ? $"the conversation renders to {prompt.Ids.Count} tokens; with ChatOptions.MaxOutputTokens = {asked} that is " +
                  $"{(long)prompt.Ids.Count + asked}, more than the model's context length of {context}. Shorten the conversation or lower MaxOutputTokens."
                : $"the conversation renders to {prompt.Ids.Count} tokens, which leaves no room for a reply in the model's context length " +
                  $"of {context}. Shorten the conversation.");
        // The template decides how the model writes calls and whether its replies reason in <think> blocks.
        var source = promptBuilder.Template?.Source;
        var format = ToolCallFormat.ForTemplate(source);
        var callable = chatOptions?.ToolMode is NoneChatToolMode ? null : tools;
        var grammar = ChatContentMapping.Grammar(chatOptions, callable, format);
        // A grammar ends the reply itself (EOS once the value is whole); the end-of-turn text must not cut a string short.
        var implied = grammar is not null && promptBuilder.Template is not null ? [] : prompt.ImpliedStops;
        return new PreparedChat(prompt.Ids, generation, stops.Concat(implied).Distinct().ToArray(),
            grammar, callable is null ? null : chatOptions?.ToolMode is RequiredChatToolMode ? format.RequiredCallFormat : format,
            source?.Contains("<think>", StringComparison.Ordinal) == true, prompt.EndsInsideReasoning, chatOptions?.AllowMultipleToolCalls ?? true);
    }

    /// <summary>One request ready to generate: prompt, sampling, stops, constraint, and how to read the reply.</summary>
    private sealed record PreparedChat(IReadOnlyList<int> Prompt, GenerationOptions Generation, IReadOnlyList<string> Stops,
        SharpTune.Generation.Constrained.ConstrainedGrammar? Grammar, ToolCallFormat? Calls, bool Reasons, bool InsideReasoning, bool ParallelCalls)
    {
        public ChatOutputParser? NewParser() => Calls is not null || Reasons ? new ChatOutputParser(Calls, Reasons, InsideReasoning) : null;
    }

    private static UsageDetails Usage(TextCompletion completion) => new()
    {
        InputTokenCount = completion.PromptIds.Count,
        OutputTokenCount = completion.Tokens.Count,
        TotalTokenCount = completion.PromptIds.Count + completion.Tokens.Count,
    };

    private static string NewResponseId() => "chatcmpl-" + Guid.NewGuid().ToString("N");
}
