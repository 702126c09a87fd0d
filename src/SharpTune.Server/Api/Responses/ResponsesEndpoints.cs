using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using SharpTune.Server.Engine;
using SharpTune.Server.Observability;
using SharpTune.Serving.ToolCalls;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api.Responses;

/// <summary>
/// OpenAI's Responses API: <c>POST /v1/responses</c> (whole or streamed as its typed events), <c>GET</c> and
/// <c>DELETE /v1/responses/{id}</c>, <c>GET /v1/responses/{id}/input_items</c>, and background responses
/// (<c>background: true</c>: answered at once as queued, generated on, polled with <c>GET</c>, stopped with
/// <c>POST /v1/responses/{id}/cancel</c>; with <c>stream: true</c> too, its events are streamed as they come and kept, so
/// that <c>GET /v1/responses/{id}?stream=true&amp;starting_after=N</c> can replay them and follow on). A request becomes a chat request —
/// instructions as the system message, the stored conversation of <c>previous_response_id</c>, then the input items —
/// and runs on the same engine, templates, tool-call parsing and constrained decoding as <c>/v1/chat/completions</c>.
/// </summary>
internal sealed class ResponsesEndpoints(CompletionEndpoints completions, InferenceEngine engine, ServerOptions options, ServerMetrics metrics,
    ResponseStore store)
{
    /// <summary>A background response still generating: what cancels it, whether a client asked to, and when its end is recorded.</summary>
    private sealed class BackgroundRun
    {
        public CancellationTokenSource Cancel { get; } = new();
        /// <summary>Set before <see cref="Cancel"/> fires for a client's cancel, so the end is recorded as cancelled, not as failed.</summary>
        public volatile bool CancelRequested;
        public TaskCompletionSource Ended { get; } = new();
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, BackgroundRun> running = new(StringComparer.Ordinal);

    /// <summary>The events of each background response created with <c>stream: true</c>, until <see cref="StreamRetention"/> after it ended.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, ResponseEventLog> streams = new(StringComparer.Ordinal);

    /// <summary>
    /// How long a streamed background response's events stay after it ended, as OpenAI lets a background stream be
    /// resumed for minutes, not for as long as the response is stored.
    /// </summary>
    public static readonly TimeSpan StreamRetention = TimeSpan.FromMinutes(5);

    /// <summary>Events kept per streamed background response (about one per generated token); older ones are dropped.</summary>
    public int EventCapacity { get; init; } = 16_384;

    public async Task CreateAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        cancellation.CancelAfter(options.RequestTimeout);
        BackgroundRun? background = null;
        var sequence = 0;
        try
        {
            var request = ResponsesRequestParser.Parse(await RequestBody.ReadJsonAsync(context, options.MaxBodyBytes));
            var conversation = ResponseInputItems.NameToolResults(History(request.PreviousResponseId).Concat(request.Input));

            // A background response outlives its request: only the server's request timeout or a cancel ends it early.
            if (request.Background)
            {
                background = new BackgroundRun();
                background.Cancel.CancelAfter(options.RequestTimeout);
            }
            var inference = Prepare(request, conversation, background?.Cancel.Token ?? cancellation.Token, out var settings);
            if (!engine.TryEnqueue(inference))
            {
                context.Response.Headers.RetryAfter = "1";
                throw new ApiException(429, $"the server is at capacity ({engine.QueueDepth} requests waiting); retry later", "rate_limit_error", code: "rate_limit_exceeded");
            }
            var parser = settings.Tools is not null || settings.Reasons ? new ChatOutputParser(settings.Tools, settings.Reasons, settings.InsideReasoning) : null;
            var output = new ResponseOutput(parser, request.ParallelToolCalls, request.OutputTextLogprobs ? settings.Logprobs : null);
            var shape = new ResponseJson(request);
            var inputItems = ResponseJson.WithIds(request.InputItems);
            if (background is not null)
            {
                var queued = shape.Queued();
                store.Add(shape.Id, new StoredResponse((JsonObject)queued.DeepClone(), inputItems, conversation, Streamed: request.Stream));
                ResponseEventLog? events = null;
                if (request.Stream)
                {
                    // OpenAI's background stream opens with the response created, then queued, before it is in progress.
                    events = new ResponseEventLog(EventCapacity);
                    ForgetExpiredStreams();
                    streams[shape.Id] = events;
                    events.Add("response.created", new JsonObject { ["response"] = queued.DeepClone() });
                    events.Add("response.queued", new JsonObject { ["response"] = queued.DeepClone() });
                }
                var run = background;
                background = null;   // the background task owns it now
                running[shape.Id] = run;
                _ = Task.Run(async () =>
                {
                    try { await RunInBackgroundAsync(shape, inference, output, conversation, started, run, events); }
                    finally
                    {
                        running.TryRemove(shape.Id, out _);
                        run.Cancel.Dispose();
                        run.Ended.SetResult();
                    }
                }, CancellationToken.None);
                // The client's connection only reads: dropping it leaves the response generating, to resume or poll.
                if (events is null) await JsonResponse.WriteAsync(context, queued);
                else await StreamAsync(context, events, startingAfter: -1);
                return;
            }
            if (request.Stream)
            {
                ServerSentEvents.Begin(context);
                await SendAsync(context, "response.created", new JsonObject { ["response"] = shape.InProgress() }, sequence++, cancellation.Token);
                await SendAsync(context, "response.in_progress", new JsonObject { ["response"] = shape.InProgress() }, sequence++, cancellation.Token);
            }
            var (response, last) = await GenerateAsync(shape, inference, output, started, request.Stream
                ? async e => await SendAsync(context, e.Type, e.Fields, sequence++, cancellation.Token)
                : null, onFirstEvent: null, cancellation.Token);
            if (request.Store)
                store.Add(shape.Id, new StoredResponse((JsonObject)response.DeepClone(), inputItems, [.. conversation, output.AsMessage()]));
            if (!request.Stream)
            {
                await JsonResponse.WriteAsync(context, response);
                return;
            }
            foreach (var e in last) await SendAsync(context, e.Type, e.Fields, sequence++, cancellation.Token);
            var status = response["status"]!.GetValue<string>();
            await SendAsync(context, status == "completed" ? "response.completed" : "response.incomplete", new JsonObject { ["response"] = response },
                sequence++, cancellation.Token);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away: its row was dropped at the engine's next step; nothing to answer.
        }
        catch (Exception e)
        {
            var error = Error(e, cancellation.IsCancellationRequested);
            if (!context.Response.HasStarted) await error.WriteAsync(context);
            else if (!context.RequestAborted.IsCancellationRequested)
                await SendAsync(context, "error", new JsonObject { ["code"] = error.Code, ["message"] = error.Message, ["param"] = error.Param },
                    sequence, CancellationToken.None);
        }
        finally
        {
            background?.Cancel.Dispose();   // set only when the request failed before its background task started
        }
    }

    /// <summary>
    /// The chat request a Responses request becomes (instructions first, then <paramref name="conversation"/>). With
    /// truncation "auto", items are dropped from the start of the conversation until the input fits the context, as
    /// OpenAI does; "disabled" (the default) refuses an input that does not fit, naming 'input'.
    /// </summary>
    private InferenceRequest Prepare(ResponsesRequest request, IReadOnlyList<ChatMessage> conversation, CancellationToken cancellation,
        out OutputSettings settings)
    {
        var kept = conversation.ToList();
        while (true)
        {
            try
            {
                return completions.Prepare(new CompletionRequest
                {
                    Model = request.Model,
                    Messages = request.Instructions is { } instructions ? [new ChatMessage("system", instructions), .. kept] : kept,
                    MaxTokens = request.MaxOutputTokens,
                    Temperature = request.Temperature,
                    TopP = request.TopP,
                    Seed = request.Seed,
                    Tools = request.Tools,
                    ToolChoice = request.ToolChoice,
                    ToolChoiceFunction = request.ToolChoiceFunction,
                    ParallelToolCalls = request.ParallelToolCalls,
                    ResponseGrammar = request.TextGrammar,
                    Logprobs = request.OutputTextLogprobs,
                    TopLogprobs = request.TopLogprobs ?? 0,
                }, chat: true, cancellation, out settings).Single();
            }
            catch (ApiException e) when (e.Code == "context_length_exceeded")
            {
                if (!request.TruncationAuto || kept.Count <= 1)
                    throw ApiException.BadField("input", e.Message.Replace("the messages", "the input", StringComparison.Ordinal), e.Code);
                kept.RemoveAt(0);
                // A tool result whose call was dropped answers nothing: it goes with its call.
                while (kept.Count > 1 && kept[0].Role == "tool") kept.RemoveAt(0);
            }
        }
    }

    /// <summary>
    /// <c>POST /v1/responses/input_tokens</c>: how many tokens the input of a Responses request (the same body, its
    /// instructions, tools and <c>previous_response_id</c> included) takes as the model's prompt, without generating —
    /// OpenAI's <c>{"object": "response.input_tokens", "input_tokens": N}</c>.
    /// </summary>
    public async Task InputTokensAsync(HttpContext context)
    {
        try
        {
            var request = ResponsesRequestParser.Parse(await RequestBody.ReadJsonAsync(context, options.MaxBodyBytes));
            var conversation = ResponseInputItems.NameToolResults(History(request.PreviousResponseId).Concat(request.Input));
            var inference = Prepare(request, conversation, context.RequestAborted, out _);
            await JsonResponse.WriteAsync(context, new JsonObject { ["object"] = "response.input_tokens", ["input_tokens"] = inference.PromptIds.Count });
        }
        catch (Exception e) when (!context.Response.HasStarted) { await Error(e, timedOut: false).WriteAsync(context); }
    }

    /// <summary>
    /// Reads the engine's events for one response into <paramref name="output"/>, handing each response event to
    /// <paramref name="send"/> when streaming; returns the finished response and the events its end releases.
    /// </summary>
    private async Task<(JsonObject Response, IReadOnlyList<ResponseEvent> Last)> GenerateAsync(ResponseJson shape, InferenceRequest inference,
        ResponseOutput output, long started, Func<ResponseEvent, Task>? send, Action? onFirstEvent, CancellationToken cancellation)
    {
        var finish = "stop";
        var completionTokens = 0;
        var first = true;
        var announced = false;
        await foreach (var item in inference.Events.Reader.ReadAllAsync(cancellation))
        {
            if (!announced) { onFirstEvent?.Invoke(); announced = true; }
            IReadOnlyList<ResponseEvent> events = [];
            if (item is RowText text)
            {
                if (first) { metrics.FirstToken(Stopwatch.GetElapsedTime(started)); first = false; }
                events = output.Push(text.Text);
            }
            else if (item is RowToken token) output.AddToken(token.Token);
            else if (item is RowFinished done) (finish, completionTokens) = (done.FinishReason, done.CompletionTokens);
            if (send is not null)
                foreach (var e in events) await send(e);
        }
        var last = output.Finish(cutOff: finish == "length");
        metrics.Tokens(inference.PromptIds.Count, completionTokens);
        return (shape.Finished(output.Items, finish, inference.PromptIds.Count, completionTokens, inference.CachedPromptTokens), last);
    }

    /// <summary>
    /// Generates a background response (<c>background: true</c>), recording its state in the store as it goes: queued,
    /// in_progress from the engine's first event, then completed or incomplete — or cancelled (<c>POST
    /// /v1/responses/{id}/cancel</c>), or failed with the error a request would have answered (the request timeout).
    /// With <paramref name="events"/> (created with <c>stream: true</c>), every event a streamed request would have sent
    /// goes there too, ending with the response's final state: response.completed, .incomplete, .failed or .cancelled.
    /// </summary>
    private async Task RunInBackgroundAsync(ResponseJson shape, InferenceRequest inference, ResponseOutput output,
        IReadOnlyList<ChatMessage> conversation, long started, BackgroundRun run, ResponseEventLog? events)
    {
        JsonObject final;
        IReadOnlyList<ChatMessage> ended = conversation;
        try
        {
            var (response, last) = await GenerateAsync(shape, inference, output, started,
                events is null ? null : e => { events.Add(e.Type, e.Fields); return Task.CompletedTask; },
                onFirstEvent: () =>
                {
                    var inProgress = shape.InProgress();
                    store.Replace(shape.Id, stored => stored with { Response = (JsonObject)inProgress.DeepClone() });
                    events?.Add("response.in_progress", new JsonObject { ["response"] = inProgress });
                }, run.Cancel.Token);
            foreach (var e in events is null ? [] : last) events!.Add(e.Type, e.Fields);
            final = response;
            ended = [.. conversation, output.AsMessage()];
        }
        catch (OperationCanceledException) when (run.CancelRequested)
        {
            final = shape.Cancelled();
        }
        catch (Exception e)
        {
            var error = Error(e, run.Cancel.IsCancellationRequested);
            final = shape.Failed(error.Code ?? "server_error", error.Message);
        }
        store.Replace(shape.Id, stored => stored with { Response = final, Conversation = ended });
        if (events is null) return;
        // Recorded in the store first, so a reader who sees the stream end and then polls sees the same state.
        var terminal = (final["status"] as JsonValue)?.GetValue<string>() switch
        {
            "completed" => "response.completed",
            "incomplete" => "response.incomplete",
            "cancelled" => "response.cancelled",
            _ => "response.failed",
        };
        try { events.Add(terminal, new JsonObject { ["response"] = final.DeepClone() }); }
        finally { events.End(); }
    }

    /// <summary>
    /// <c>POST /v1/responses/{id}/cancel</c>: stops a background response (its row leaves the engine at the next step) and
    /// answers it, now cancelled. A background response that already ended is answered as it is, as cancelling is
    /// idempotent; a response created without <c>background</c> cannot be cancelled.
    /// </summary>
    public async Task CancelAsync(HttpContext context, string id)
    {
        await StopAsync(id, context.RequestAborted);
        if (!store.TryGet(id, out var stored)) { await NotFound(context, id); return; }
        if (stored.Response["background"] is not JsonValue flag || !flag.GetValue<bool>())
        {
            await ApiException.BadField("response_id", $"Response '{id}' was not created with background=true; only background responses can be cancelled.")
                .WriteAsync(context);
            return;
        }
        await JsonResponse.WriteAsync(context, stored.Response.DeepClone());
    }

    /// <summary>Cancels a background response still generating and waits until its end is recorded.</summary>
    private async Task StopAsync(string id, CancellationToken cancellation)
    {
        if (!running.TryGetValue(id, out var run)) return;
        run.CancelRequested = true;
        try { await run.Cancel.CancelAsync(); }
        catch (ObjectDisposedException) { }   // it ended (and let go of its token) since it was looked up
        await run.Ended.Task.WaitAsync(cancellation);
    }

    private ApiException Error(Exception e, bool timedOut) => e switch
    {
        ApiException api => api,
        OperationCanceledException when timedOut => new ApiException(504,
            $"the response did not finish within the server's request timeout of {options.RequestTimeout.TotalSeconds:0.###} s", "timeout_error", code: "timeout"),
        OperationCanceledException => new ApiException(503, "the server is shutting down", "server_error"),
        AdapterRemovedException removed => new ApiException(404, removed.Message, param: "model", code: "model_not_found"),
        _ => new ApiException(500, $"generation failed: {e.Message}", "server_error"),
    };

    /// <summary>
    /// <c>GET /v1/responses/{id}</c>: the stored response, or with <c>stream=true</c> the events of a background response
    /// created with <c>stream: true</c>: those numbered above <c>starting_after</c> (all without it), then the live ones
    /// until it ends. OpenAI streams only background responses, and only those created streaming.
    /// </summary>
    public async Task GetAsync(HttpContext context, string id)
    {
        if (!store.TryGet(id, out var stored)) { await NotFound(context, id); return; }
        try
        {
            if (!(QueryBool(context, "stream") ?? false))
            {
                await JsonResponse.WriteAsync(context, stored.Response.DeepClone());
                return;
            }
            var startingAfter = QueryWholeNumber(context, "starting_after") ?? -1;
            if (stored.Response["background"] is not JsonValue flag || !flag.GetValue<bool>())
                throw ApiException.BadField("stream", $"Response '{id}' was not created with background=true; only background responses can be streamed.");
            if (!stored.Streamed)
                throw ApiException.BadField("stream", $"Response '{id}' was not created with stream=true; only a background response created streaming can be streamed.");
            ForgetExpiredStreams();
            if (!streams.TryGetValue(id, out var events))
                throw ApiException.BadField("stream", $"Response '{id}' can no longer be streamed: its events are kept for " +
                    $"{StreamRetention.TotalMinutes:0} minutes after it ends; GET it without stream for its final state.");
            if (!events.CanResumeAfter(startingAfter))
                throw ApiException.BadField("starting_after", $"Events of response '{id}' before sequence number {events.Oldest} are no longer kept " +
                    $"(this server keeps the last {events.Capacity}); resume with starting_after >= {events.Oldest - 1}, or GET it without stream for its final state.");
            await StreamAsync(context, events, startingAfter);
        }
        catch (ApiException e) when (!context.Response.HasStarted) { await e.WriteAsync(context); }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested)
        {
            // The reader went away (cancelled, or its connection reset mid-write); the response goes on.
        }
    }

    /// <summary>Sends a background response's events after <paramref name="startingAfter"/> as they come, until it ends.</summary>
    private static async Task StreamAsync(HttpContext context, ResponseEventLog events, int startingAfter)
    {
        ServerSentEvents.Begin(context);
        var cancellation = context.RequestAborted;
        try
        {
            await foreach (var batch in events.ReadAsync(startingAfter, cancellation))
            {
                foreach (var e in batch) await context.Response.WriteAsync(e, cancellation);
                await context.Response.Body.FlushAsync(cancellation);
            }
        }
        catch (ResponseEventsDroppedException dropped)
        {
            // This reader fell further behind than the events kept: it is told, rather than handed a stream with a gap.
            await SendAsync(context, "error", new JsonObject { ["code"] = "stream_events_dropped", ["message"] = dropped.Message, ["param"] = null },
                dropped.Oldest, cancellation);
        }
    }

    private static bool? QueryBool(HttpContext context, string name) => context.Request.Query[name].FirstOrDefault() switch
    {
        null => null,
        "true" => true,
        "false" => false,
        var text => throw ApiException.BadField(name, $"'{name}' is '{text}'; expected 'true' or 'false'"),
    };

    private static int? QueryWholeNumber(HttpContext context, string name)
    {
        var text = context.Request.Query[name].FirstOrDefault();
        if (text is null) return null;
        return int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number) ? number
            : throw ApiException.BadField(name, $"'{name}' must be a whole number (a sequence number), found '{text}'");
    }

    /// <summary>Drops the events of streamed background responses that ended longer than <see cref="StreamRetention"/> ago.</summary>
    private void ForgetExpiredStreams()
    {
        var cutoff = DateTimeOffset.UtcNow - StreamRetention;
        foreach (var (id, events) in streams)
            if (events.EndedAt < cutoff) streams.TryRemove(id, out _);
    }

    public async Task DeleteAsync(HttpContext context, string id)
    {
        await StopAsync(id, context.RequestAborted);   // a background response still generating stops before it is forgotten
        streams.TryRemove(id, out _);
        // OpenAI's reply (API reference, "Delete a model response"; the SDKs' ResponseDeleteResponse) names the deleted
        // object's own type: {"id", "object": "response", "deleted": true}.
        await (store.Remove(id)
            ? JsonResponse.WriteAsync(context, new JsonObject { ["id"] = id, ["object"] = "response", ["deleted"] = true })
            : NotFound(context, id));
    }

    /// <summary>The input items of a stored response, as OpenAI's cursor page (newest first unless order=asc).</summary>
    public async Task InputItemsAsync(HttpContext context, string id)
    {
        if (!store.TryGet(id, out var stored)) { await NotFound(context, id); return; }
        try { await JsonResponse.WriteAsync(context, InputItemsPage(context, id, stored)); }
        catch (ApiException e) { await e.WriteAsync(context); }
    }

    private static JsonObject InputItemsPage(HttpContext context, string id, StoredResponse stored)
    {
        // OpenAI's cursor page: newest first unless order=asc, limit 1–100 (20), after = the last item id of the page before.
        var limit = ListQuery.Limit(context, 20, 100);
        var items = stored.InputItems.Select(i => i!.DeepClone()).ToList();
        if (ListQuery.NewestFirst(context)) items.Reverse();
        var after = context.Request.Query["after"].FirstOrDefault();
        var start = after is null ? 0 : items.FindIndex(i => (i["id"] as JsonValue)?.GetValue<string>() == after) + 1;
        if (after is not null && start == 0) throw ApiException.BadField("after", $"no input item with id '{after}' in response '{id}'");
        var data = new JsonArray(items.Skip(start).Take(limit).ToArray());
        return new JsonObject
        {
            ["object"] = "list",
            ["data"] = data,
            ["first_id"] = data.FirstOrDefault()?["id"]?.DeepClone(),
            ["last_id"] = data.LastOrDefault()?["id"]?.DeepClone(),
            ["has_more"] = start + limit < items.Count,
        };
    }

    /// <summary>The conversation a stored response ended (its own input and output, and what it continued).</summary>
    private IReadOnlyList<ChatMessage> History(string? previousId)
    {
        if (previousId is null) return [];
        if (!store.TryGet(previousId, out var stored))
            throw ApiException.BadField("previous_response_id", $"Previous response with id '{previousId}' not found.", "previous_response_not_found");
        var status = (stored.Response["status"] as JsonValue)?.GetValue<string>();
        return status is "queued" or "in_progress"
            ? throw ApiException.BadField("previous_response_id", $"Previous response '{previousId}' is still {status}; wait until it has finished.")
            : stored.Conversation;
    }

    private static Task NotFound(HttpContext context, string id) =>
        new ApiException(404, $"No response found with id '{id}'.", param: "response_id", code: "not_found").WriteAsync(context);

    /// <summary>A server-sent event as OpenAI sends them: the event name, then the data with its type and sequence number.</summary>
    private static async Task SendAsync(HttpContext context, string type, JsonObject fields, int sequence, CancellationToken cancellation)
    {
        await context.Response.WriteAsync(ResponseEventLog.Format(type, fields, sequence), cancellation);
        await context.Response.Body.FlushAsync(cancellation);
    }
}
