using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using SharpTune.Server.Engine;
using SharpTune.Server.Observability;
using SharpTune.Serving.ToolCalls;
using SharpTune.Tokenization;

namespace SharpTune.Server.Api.Responses;

/// <summary>
/// OpenAI's Responses API: <c>POST /v1/responses</c> (whole or streamed as its typed events), <c>GET</c> and
/// <c>DELETE /v1/responses/{id}</c>, and <c>GET /v1/responses/{id}/input_items</c>. A request becomes a chat request —
/// instructions as the system message, the stored conversation of <c>previous_response_id</c>, then the input items —
/// and runs on the same engine, templates, tool-call parsing and constrained decoding as <c>/v1/chat/completions</c>.
/// </summary>
internal sealed class ResponsesEndpoints(CompletionEndpoints completions, InferenceEngine engine, ServerOptions options, ServerMetrics metrics,
    ResponseStore store)
{
    public async Task CreateAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        cancellation.CancelAfter(options.RequestTimeout);
        var sequence = 0;
        try
        {
            var request = ResponsesRequestParser.Parse(await RequestBody.ReadJsonAsync(context, options.MaxBodyBytes));
            var conversation = ResponseInputItems.NameToolResults(History(request.PreviousResponseId).Concat(request.Input));
            IReadOnlyList<ChatMessage> prompt = request.Instructions is { } instructions ? [new ChatMessage("system", instructions), .. conversation] : conversation;
            var inference = completions.Prepare(new CompletionRequest
            {
                Model = request.Model,
                Messages = prompt,
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
            }, chat: true, cancellation.Token, out var settings).Single();
            if (!engine.TryEnqueue(inference))
            {
                context.Response.Headers.RetryAfter = "1";
                throw new ApiException(429, $"the server is at capacity ({engine.QueueDepth} requests waiting); retry later", "rate_limit_error", code: "rate_limit_exceeded");
            }
            var parser = settings.Tools is not null || settings.Reasons ? new ChatOutputParser(settings.Tools, settings.Reasons, settings.InsideReasoning) : null;
            var output = new ResponseOutput(parser, request.ParallelToolCalls, request.OutputTextLogprobs ? settings.Logprobs : null);
            var shape = new ResponseJson(request);
            if (request.Stream)
            {
                context.Response.ContentType = "text/event-stream";
                context.Response.Headers.CacheControl = "no-cache";
                context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
                await SendAsync(context, "response.created", new JsonObject { ["response"] = shape.InProgress() }, sequence++, cancellation.Token);
                await SendAsync(context, "response.in_progress", new JsonObject { ["response"] = shape.InProgress() }, sequence++, cancellation.Token);
            }
            var finish = "stop";
            var completionTokens = 0;
            var first = true;
            await foreach (var item in inference.Events.Reader.ReadAllAsync(cancellation.Token))
            {
                IReadOnlyList<ResponseEvent> events = [];
                if (item is RowText text)
                {
                    if (first) { metrics.FirstToken(Stopwatch.GetElapsedTime(started)); first = false; }
                    events = output.Push(text.Text);
                }
                else if (item is RowToken token) output.AddToken(token.Token);
                else if (item is RowFinished done) (finish, completionTokens) = (done.FinishReason, done.CompletionTokens);
                if (request.Stream)
                    foreach (var e in events) await SendAsync(context, e.Type, e.Fields, sequence++, cancellation.Token);
            }
            var last = output.Finish();
            var response = shape.Finished(output.Items, finish, inference.PromptIds.Count, completionTokens);
            if (request.Store)
                store.Add(shape.Id, new StoredResponse((JsonObject)response.DeepClone(), ResponseJson.WithIds(request.InputItems), [.. conversation, output.AsMessage()]));
            metrics.Tokens(inference.PromptIds.Count, completionTokens);
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
            var error = e switch
            {
                ApiException api => api,
                OperationCanceledException when cancellation.IsCancellationRequested => new ApiException(504,
                    $"the response did not finish within the server's request timeout of {options.RequestTimeout.TotalSeconds:0.###} s", "timeout_error", code: "timeout"),
                OperationCanceledException => new ApiException(503, "the server is shutting down", "server_error"),
                AdapterRemovedException removed => new ApiException(404, removed.Message, param: "model", code: "model_not_found"),
                _ => new ApiException(500, $"generation failed: {e.Message}", "server_error"),
            };
            if (!context.Response.HasStarted) await error.WriteAsync(context);
            else if (!context.RequestAborted.IsCancellationRequested)
                await SendAsync(context, "error", new JsonObject { ["code"] = error.Code, ["message"] = error.Message, ["param"] = error.Param },
                    sequence, CancellationToken.None);
        }
    }

    public Task GetAsync(HttpContext context, string id) =>
        store.TryGet(id, out var stored) ? JsonResponse.WriteAsync(context, stored.Response.DeepClone()) : NotFound(context, id);

    public Task DeleteAsync(HttpContext context, string id) =>
        store.Remove(id)
            ? JsonResponse.WriteAsync(context, new JsonObject { ["id"] = id, ["object"] = "response.deleted", ["deleted"] = true })
            : NotFound(context, id);

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
        return store.TryGet(previousId, out var stored) ? stored.Conversation
            : throw ApiException.BadField("previous_response_id", $"Previous response with id '{previousId}' not found.", "previous_response_not_found");
    }

    private static Task NotFound(HttpContext context, string id) =>
        new ApiException(404, $"No response found with id '{id}'.", param: "response_id", code: "not_found").WriteAsync(context);

    /// <summary>A server-sent event as OpenAI sends them: the event name, then the data with its type and sequence number.</summary>
    private static async Task SendAsync(HttpContext context, string type, JsonObject fields, int sequence, CancellationToken cancellation)
    {
        var data = new JsonObject { ["type"] = type, ["sequence_number"] = sequence };
        foreach (var (key, value) in fields.ToList())
        {
            fields.Remove(key);
            data[key] = value;
        }
        await context.Response.WriteAsync($"event: {type}\ndata: {data.ToJsonString()}\n\n", cancellation);
        await context.Response.Body.FlushAsync(cancellation);
    }
}
