using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace SharpTune.Server.Api.Responses;

/// <summary>The response object of the Responses API for one request, in progress or finished.</summary>
internal sealed class ResponseJson(ResponsesRequest request)
{
    public string Id { get; } = "resp_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));

    private readonly long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public JsonObject InProgress() => Build("in_progress", [], null, null);

    /// <summary>A background response accepted and waiting for the model.</summary>
    public JsonObject Queued() => Build("queued", [], null, null);

    /// <summary>A background response stopped by <c>POST /v1/responses/{id}/cancel</c>.</summary>
    public JsonObject Cancelled() => Build("cancelled", [], null, null);

    /// <summary>A background response that ended in an error (OpenAI's <c>error: {code, message}</c>).</summary>
    public JsonObject Failed(string code, string message) =>
        Build("failed", [], null, null, new JsonObject { ["code"] = code, ["message"] = message });

    /// <summary>
    /// "completed", or "incomplete" with reason max_output_tokens when the reply ran out of tokens; <paramref name="cachedTokens"/>
    /// of the input came from the prefix cache.
    /// </summary>
    public JsonObject Finished(JsonArray output, string finishReason, int inputTokens, int outputTokens, int cachedTokens = 0)
    {
        var usage = new JsonObject
        {
            ["input_tokens"] = inputTokens,
            ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = cachedTokens },
            ["output_tokens"] = outputTokens,
            ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = 0 },
            ["total_tokens"] = inputTokens + outputTokens,
        };
        return finishReason == "length"
            ? Build("incomplete", output, usage, new JsonObject { ["reason"] = "max_output_tokens" })
            : Build("completed", output, usage, null);
    }

    /// <summary>Input items with an id each (as OpenAI lists them), ids the client gave kept.</summary>
    public static JsonArray WithIds(JsonArray items) => new(items.Select(i =>
    {
        var item = (JsonObject)i!.DeepClone();
        // Stored as OpenAI lists input items: an easy {role, content} message is a "message" item whose content is parts.
        if (item["type"] is null && item["role"] is not null) item["type"] = "message";
        if ((item["type"] as JsonValue)?.GetValue<string>() == "message" && item["content"] is JsonValue text && text.TryGetValue<string>(out var content))
            item["content"] = new JsonArray((item["role"] as JsonValue)?.GetValue<string>() == "assistant"
                ? new JsonObject { ["type"] = "output_text", ["text"] = content, ["annotations"] = new JsonArray() }
                : new JsonObject { ["type"] = "input_text", ["text"] = content });
        if (item["id"] is null)
        {
            var prefix = (item["type"] as JsonValue)?.GetValue<string>() switch { "function_call" => "fc_", "function_call_output" => "fco_", "reasoning" => "rs_", _ => "msg_" };
            item["id"] = prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        }
        return (JsonNode)item;
    }).ToArray());

    private JsonObject Build(string status, JsonArray output, JsonObject? usage, JsonObject? incomplete, JsonObject? error = null) => new()
    {
        ["id"] = Id,
        ["object"] = "response",
        ["created_at"] = created,
        ["status"] = status,
        // OpenAI's Response.completed_at: when a completed response finished, null in any other state.
        ["completed_at"] = status == "completed" ? DateTimeOffset.UtcNow.ToUnixTimeSeconds() : null,
        ["background"] = request.Background,
        ["error"] = error,
        ["incomplete_details"] = incomplete,
        ["instructions"] = request.Instructions,
        ["max_output_tokens"] = request.MaxOutputTokens,
        ["max_tool_calls"] = request.MaxToolCalls,
        ["model"] = request.Model,
        ["output"] = output,
        ["parallel_tool_calls"] = request.ParallelToolCalls,
        ["previous_response_id"] = request.PreviousResponseId,
        ["prompt_cache_key"] = request.PromptCacheKey,
        ["reasoning"] = new JsonObject { ["effort"] = null, ["summary"] = null },
        ["safety_identifier"] = request.SafetyIdentifier,
        // The tier that served the request, as OpenAI reports it (a request's "auto" resolves to "default"): this server has only that one.
        ["service_tier"] = "default",
        ["store"] = request.Store,
        ["temperature"] = request.Temperature ?? 1.0,
        ["text"] = new JsonObject { ["format"] = request.TextFormatJson.DeepClone() },
        ["tool_choice"] = request.ToolChoiceJson.DeepClone(),
        ["tools"] = request.ToolsJson.DeepClone(),
        ["top_logprobs"] = request.TopLogprobs ?? 0,
        ["top_p"] = request.TopP ?? 1.0,
        ["truncation"] = request.TruncationAuto ? "auto" : "disabled",
        ["usage"] = usage,
        ["user"] = request.User,
        ["metadata"] = request.Metadata.DeepClone(),
    };
}
