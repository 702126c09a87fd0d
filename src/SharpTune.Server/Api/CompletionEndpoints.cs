using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using SharpTune.Server.Adapters;
using SharpTune.Server.Engine;
using SharpTune.Server.Observability;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api;

/// <summary>
/// <c>POST /v1/chat/completions</c> and <c>POST /v1/completions</c>: validate, render and encode the prompt, queue it on
/// the engine, and answer with the whole completion or as server-sent events.
/// </summary>
internal sealed class CompletionEndpoints(ServedModel served, AdapterRegistry adapters, InferenceEngine engine,
    ServerOptions options, ServerMetrics metrics)
{
    public Task ChatAsync(HttpContext context) => HandleAsync(context, chat: true);

    public Task CompletionsAsync(HttpContext context) => HandleAsync(context, chat: false);

    private async Task HandleAsync(HttpContext context, bool chat)
    {
        var started = Stopwatch.GetTimestamp();
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        cancellation.CancelAfter(options.RequestTimeout);
        try
        {
            var body = await RequestBody.ReadJsonAsync(context, options.MaxBodyBytes);
            var request = CompletionRequestParser.Parse(body, chat, options.MaxBatchSize);
            var requests = Prepare(request, chat, cancellation.Token, out var output);
            foreach (var item in requests)
            {
                if (engine.TryEnqueue(item)) continue;
                await cancellation.CancelAsync();   // drop the prompts of this call already queued
                context.Response.Headers.RetryAfter = "1";
                throw new ApiException(429, $"the server is at capacity ({engine.QueueDepth} requests waiting); retry later",
                    "rate_limit_error", code: "rate_limit_exceeded");
            }
            var shapes = new ResponseShapes(chat, request.Model);
            var promptTokens = requests.Sum(r => r.PromptIds.Count);
            var events = Merge(requests, request.N);
            var choices = Enumerable.Range(0, requests.Count * request.N).Select(i => new ChoiceOutput(output, i / request.N)).ToArray();
            var completionTokens = request.Stream
                ? await StreamAsync(context, shapes, request, choices, requests, events, started, cancellation.Token)
                : await RespondAsync(context, shapes, request, choices, requests, events, started, cancellation.Token);
            metrics.Tokens(promptTokens, completionTokens);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away: its rows were dropped at the engine's next step; nothing to answer.
        }
        catch (Exception e)
        {
            var error = e switch
            {
                ApiException api => api,
                OperationCanceledException when cancellation.IsCancellationRequested => new ApiException(504,
                    $"the completion did not finish within the server's request timeout of {options.RequestTimeout.TotalSeconds:0.###} s",
                    "timeout_error", code: "timeout"),
                OperationCanceledException => new ApiException(503, "the server is shutting down", "server_error"),
                AdapterRemovedException removed => new ApiException(404, removed.Message, param: "model", code: "model_not_found"),
                _ => new ApiException(500, $"generation failed: {e.Message}", "server_error"),
            };
            if (!context.Response.HasStarted)
                await error.WriteAsync(context);
            else if (!context.RequestAborted.IsCancellationRequested)
            {
                await WriteEventAsync(context, error.ToJson(), CancellationToken.None);   // a stream already under way
            }
        }
    }

    /// <summary>OpenAI's <c>max_tokens</c> default for text completions (chat's is the server's <see cref="ServerOptions.DefaultMaxTokens"/>).</summary>
    internal const int LegacyDefaultMaxTokens = 16;

    /// <summary>Renders and encodes the request's prompts into engine requests (shared with the Responses API).</summary>
    internal List<InferenceRequest> Prepare(CompletionRequest request, bool chat, CancellationToken cancellation, out OutputSettings output)
    {
        var (adapter, format) = Resolve(request.Model);
        var tokenizer = served.Tokenizer;
        IReadOnlyList<IReadOnlyList<int>> prompts;
        var tools = request.ToolChoice == "none" ? null : request.Tools;
        var insideReasoning = false;
        try
        {
            if (chat)
            {
                if (format.Template is null && (request.ContinueFinalMessage || !request.AddGenerationPrompt))
                {
                    var option = request.ContinueFinalMessage ? "continue_final_message" : "add_generation_prompt";
                    throw ApiException.BadField(option, $"'{option}' needs a chat template; model '{request.Model}' has none and is prompted with a plain transcript");
                }
                // The request's chat_template_kwargs over the server's defaults, as vLLM's --default-chat-template-kwargs.
                var text = format.Render(request.Messages!, request.Tools, ChatTemplateArguments.Merge(options.DefaultChatTemplateKwargs, request.ChatTemplateKwargs),
                    request.AddGenerationPrompt, request.ContinueFinalMessage);
                prompts = [tokenizer.Encode(text, addSpecialTokens: format.Template is null)];
                insideReasoning = format.Reasons && text.TrimEnd().EndsWith("<think>", StringComparison.Ordinal);
            }
            else if (request.PromptTokenIds is { } ids)
            {
                var vocabulary = served.Model.Config.VocabSize;
                for (var i = 0; i < ids.Count; i++)
                    if (ids[i].FirstOrDefault(id => id >= vocabulary, -1) is var bad and >= 0)
                        throw ApiException.BadField(ids.Count > 1 ? $"prompt[{i}]" : "prompt", $"token id {bad} is outside this model's vocabulary of {vocabulary}");
                prompts = ids;
            }
            else prompts = request.Prompts!.Select(p => tokenizer.Encode(p, addSpecialTokens: true)).ToArray();
        }
        catch (ChatTemplateException e)
        {
            throw ApiException.BadField("messages", e.Message);
        }
        // A forced call is written (and so read) in the format's forced form: JSON for the pythonic formats, as vLLM forces them.
        var forced = request.Tools is not null && request.ToolChoice == "required";
        output = new OutputSettings(chat && tools is not null ? forced ? format.ToolCalls.RequiredCallFormat : format.ToolCalls : null, chat && format.Reasons, insideReasoning,
            request.ParallelToolCalls, new LogprobsJson(tokenizer), prompts,
            !request.Echo ? null : request.Prompts ?? prompts.Select(p => tokenizer.Decode(p)).ToArray(), request.LegacyFunctions,
            NamedToolChoice: forced && request.ToolChoiceFunction is not null && !request.LegacyFunctions);
        var grammar = Grammar(request, format);
        // A grammar ends the reply itself (EOS once the value is whole); a template's end-of-turn text, which a JSON string
        // may contain, must not cut it short. The transcript's "\nUser:" stop stays (it was there before grammars).
        var implied = grammar is not null && format.Template is not null ? [] : format.ImpliedStops(tokenizer);
        var stops = chat ? request.Stop.Concat(implied).Distinct().ToArray() : request.Stop;
        var field = chat ? "messages" : "prompt";
        var context = served.ContextLength;
        // What the request leaves out comes from the model's generation_config.json, as transformers' generate does.
        var sampling = served.Model.Config.Generation.Resolve(request.Temperature, request.TopP, topK: null);
        if (request.LogitBias?.Keys.FirstOrDefault(id => id >= served.Model.Config.VocabSize, -1) is var outside and >= 0)
            throw ApiException.BadField("logit_bias", $"'logit_bias' names token id {outside}, outside this model's vocabulary of {served.Model.Config.VocabSize}");
        return prompts.Select((prompt, i) =>
        {
            if (prompt.Count == 0)
                throw ApiException.BadField(field, $"the {field} encodes to no tokens; give some text");
            var maxTokens = request.MaxTokens ?? Math.Min(chat ? options.DefaultMaxTokens : LegacyDefaultMaxTokens, context - prompt.Count);
            if (maxTokens < 1 || prompt.Count + maxTokens > context)
                throw ApiException.BadField(field,
                    $"This model's maximum context length is {context} tokens. However, you requested {prompt.Count + Math.Max(maxTokens, 1)} tokens " +
                    $"({prompt.Count} in the {field}{(prompts.Count > 1 ? $"[{i}]" : "")}, {Math.Max(maxTokens, 1)} in the completion). " +
                    $"Please reduce the length of the {field} or the completion.", "context_length_exceeded");
            return new InferenceRequest
            {
                Grammar = grammar,
                TopLogprobs = request.Logprobs ? request.TopLogprobs : null,
                PromptLogprobs = request.Echo && request.Logprobs,
                SkipSpecialTokens = tools is null || format.ToolCalls.StartMarker is not { } marker || tokenizer.TokenToId(marker) is not { } id || !tokenizer.IsSpecial(id),
                PromptIds = prompt,
                ContinuesPrompt = !chat,
                Rows = request.N,
                MaxTokens = maxTokens,
                Temperature = sampling.Temperature,
                TopP = sampling.TopP,
                TopK = sampling.TopK,
                PresencePenalty = request.PresencePenalty,
                FrequencyPenalty = request.FrequencyPenalty,
                LogitBias = request.LogitBias,
                // Unset: generation_config.json's, as vLLM's server takes its default sampling parameters from it.
                RepetitionPenalty = request.RepetitionPenalty ?? served.Model.Config.Generation.RepetitionPenalty ?? 1,
                Seed = request.Seed,
                Stops = stops,
                Adapter = adapter,
                Cancellation = cancellation,
            };
        }).ToList();
    }

    /// <summary>What constrains the output: a forced tool call (tool_choice required or named), else the response format.</summary>
    private static SharpTune.Generation.Constrained.ConstrainedGrammar? Grammar(CompletionRequest request, ChatPromptFormat format)
    {
        if (request.Tools is { } tools && request.ToolChoice == "required")
        {
            var callable = tools.Where(t => request.ToolChoiceFunction is null || t.Name == request.ToolChoiceFunction)
                .Select(t => (t.Name, t.Parameters)).ToArray();
            return format.ToolCalls.RequiredCallGrammar(callable);
        }
        return request.ResponseGrammar;
    }

    private (ServedAdapter? Adapter, ChatPromptFormat Format) Resolve(string model)
    {
        if (model == served.Name) return (null, served.ChatFormat);
        if (adapters.TryGet(model, out var adapter))
            return (adapter, options.ChatTemplate is null ? adapter.ChatFormat ?? served.ChatFormat : served.ChatFormat);
        throw new ApiException(404, $"The model '{model}' does not exist. Served: {string.Join(", ", new[] { served.Name }.Concat(adapters.All.Select(a => a.Name)))}",
            param: "model", code: "model_not_found");
    }

    private async Task<int> RespondAsync(HttpContext context, ResponseShapes shapes, CompletionRequest request, ChoiceOutput[] choices,
        IReadOnlyList<InferenceRequest> requests, ChannelReader<(int Choice, RowEvent Event)> events, long started, CancellationToken cancellation)
    {
        var completionTokens = 0;
        var first = true;
        await foreach (var (choice, item) in events.ReadAllAsync(cancellation))
        {
            if (item is RowText && first) { metrics.FirstToken(Stopwatch.GetElapsedTime(started)); first = false; }
            if (item is PromptLogprobs prompt)
                for (var i = 0; i < request.N; i++) choices[choice + i].Prompt = prompt;
            else
                choices[choice].Add(item);
            if (item is RowFinished done) completionTokens += done.CompletionTokens;
        }
        var chat = request.Messages is not null;
        var array = new JsonArray(choices.Select((c, i) => (JsonNode)(chat ? c.WholeChatChoice(i, request.Logprobs) : c.WholeTextChoice(i, request.Logprobs))).ToArray());
        var body = shapes.Response(array, requests.Sum(r => r.PromptIds.Count), completionTokens, requests.Sum(r => r.CachedPromptTokens));
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(), cancellation);
        return completionTokens;
    }

    private async Task<int> StreamAsync(HttpContext context, ResponseShapes shapes, CompletionRequest request, ChoiceOutput[] choices,
        IReadOnlyList<InferenceRequest> requests, ChannelReader<(int Choice, RowEvent Event)> events, long started, CancellationToken cancellation)
    {
        ServerSentEvents.Begin(context);
        var sse = new ServerSentEvents(context.Response);
        var chat = request.Messages is not null;
        if (chat)
            for (var i = 0; i < choices.Length; i++)
                sse.Write(shapes.ChatChunk(i, new JsonObject { ["role"] = "assistant", ["content"] = "" }, null, null, request.IncludeUsage));
        await sse.FlushAsync(cancellation);
        var completionTokens = 0;
        var first = true;
        // Every event already waiting goes out in one write: the engine can produce tokens faster than a flush per
        // token reaches the client when many streams share the machine.
        while (await events.WaitToReadAsync(cancellation))
        {
            while (events.TryRead(out var next))
            {
                var (choice, item) = next;
                if (item is RowText && first) { metrics.FirstToken(Stopwatch.GetElapsedTime(started)); first = false; }
                if (item is PromptLogprobs prompt)
                {
                    for (var i = 0; i < request.N; i++) choices[choice + i].Prompt = prompt;
                    continue;
                }
                if (item is RowFinished done) completionTokens += done.CompletionTokens;
                var state = choices[choice];
                var chunks = chat ? state.StreamChat(item, request.Logprobs) : state.StreamText(item, request.Logprobs);
                foreach (var (delta, logprobs, finish) in chunks)
                    sse.Write(chat
                        ? shapes.ChatChunk(choice, (JsonObject)delta, logprobs, finish, request.IncludeUsage)
                        : shapes.TextChunk(choice, delta.GetValue<string>(), logprobs, finish, request.IncludeUsage));
            }
            await sse.FlushAsync(cancellation);
        }
        if (request.IncludeUsage) sse.Write(shapes.UsageChunk(requests.Sum(r => r.PromptIds.Count), completionTokens, requests.Sum(r => r.CachedPromptTokens)));
        sse.WriteDone();
        await sse.FlushAsync(cancellation);
        return completionTokens;
    }

    private static async Task WriteEventAsync(HttpContext context, JsonObject json, CancellationToken cancellation)
    {
        var sse = new ServerSentEvents(context.Response);
        sse.Write(json);
        await sse.FlushAsync(cancellation);
    }

    /// <summary>One reader over every prompt's events, with choice indexes prompt × n + row as OpenAI numbers them.</summary>
    private static ChannelReader<(int Choice, RowEvent Event)> Merge(IReadOnlyList<InferenceRequest> requests, int n)
    {
        if (requests.Count == 1)
            return new SingleRequestReader(requests[0].Events.Reader);
        var merged = Channel.CreateUnbounded<(int, RowEvent)>(new UnboundedChannelOptions { SingleReader = true });
        var pumps = requests.Select(async (request, i) =>
        {
            await foreach (var item in request.Events.Reader.ReadAllAsync())
                merged.Writer.TryWrite((i * n + Row(item), item));
        }).ToArray();
        _ = Task.WhenAll(pumps).ContinueWith(t => merged.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        return merged.Reader;
    }

    private static int Row(RowEvent item) => item switch { RowText t => t.Row, RowFinished f => f.Row, RowToken k => k.Row, _ => 0 };

    /// <summary>A view of one request's events with the row as the choice index (no copying task needed).</summary>
    private sealed class SingleRequestReader(ChannelReader<RowEvent> inner) : ChannelReader<(int Choice, RowEvent Event)>
    {
        public override Task Completion => inner.Completion;

        public override bool TryRead(out (int Choice, RowEvent Event) item)
        {
            if (inner.TryRead(out var e)) { item = (Row(e), e); return true; }
            item = default;
            return false;
        }

        public override ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default) => inner.WaitToReadAsync(cancellationToken);
    }
}
