using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace SharpTune.Server.Batches;

/// <summary>Runs one batch line through its endpoint and writes the output line OpenAI writes for it.</summary>
internal sealed class BatchLineRunner(InProcessEndpoints endpoints)
{
    /// <summary>Runs one line as its live endpoint would and writes OpenAI's output line for it.</summary>
    public async Task<JsonObject> RunAsync(BatchLine line, CancellationToken cancellation)
    {
        var requestId = "req_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        // A batch answers each request whole: a streamed one (or a background response, answered before it exists) has
        // nowhere to go, and is refused as a 400 like any other bad body.
        foreach (var field in new[] { "stream", "background" })
            if (line.Body[field] is JsonValue flag && flag.TryGetValue<bool>(out var on) && on)
                return Output(line.CustomId, new EndpointAnswer(400, Api.ApiException.Body(
                    $"'{field}: true' is not supported in the Batch API; each request is answered whole in the output file",
                    "invalid_request_error", field, "unsupported_value")), null, requestId);
        while (true)
        {
            var answer = await endpoints.RunAsync(line.Url, line.Body, requestId, cancellation);
            // The engine's queue was full: live traffic came first. The line waits and tries again; it has not run.
            if (answer.StatusCode == 429 && answer.Body?["error"]?["code"]?.GetValue<string>() == "rate_limit_exceeded")
            {
                await Task.Delay(TimeSpan.FromMilliseconds(500), cancellation);
                continue;
            }
            return Output(line.CustomId, answer, null, requestId);
        }
    }

    /// <summary>
    /// An output line as OpenAI writes them (openai-openapi's BatchRequestOutput):
    /// <c>{id, custom_id, response: {status_code, request_id, body}, error}</c>; <c>error</c> only for a request that did
    /// not run (e.g. batch_expired), a rejected one carries its 4xx answer in <c>response</c>.
    /// </summary>
    private static JsonObject Output(string customId, EndpointAnswer? answer, JsonObject? error, string? requestId = null) => new()
    {
        ["id"] = "batch_req_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12)),
        ["custom_id"] = customId,
        ["response"] = answer is null ? null : new JsonObject
        {
            ["status_code"] = answer.StatusCode,
            ["request_id"] = requestId,
            ["body"] = answer.Body?.DeepClone(),
        },
        ["error"] = error,
    };

    public static bool Succeeded(JsonObject output) =>
        output["error"] is null && output["response"]?["status_code"]?.GetValue<int>() is >= 200 and < 300;

    /// <summary>Tokens in and out of a line's answer: chat/completions/embeddings usage, or the Responses API's.</summary>
    public static (long Input, long Output) Usage(JsonObject output)
    {
        if (output["response"]?["body"] is not JsonObject body || body["usage"] is not JsonObject usage) return (0, 0);
        static long Read(JsonObject usage, string name) => usage[name] is JsonValue v && v.TryGetValue<long>(out var n) ? n : 0;
        return (Read(usage, "prompt_tokens") + Read(usage, "input_tokens"), Read(usage, "completion_tokens") + Read(usage, "output_tokens"));
    }

    /// <summary>The error line of a request that never ran because the batch's 24 h window passed first.</summary>
    public static JsonObject Expired(BatchLine line) => Output(line.CustomId, null, new JsonObject
    {
        ["code"] = "batch_expired",
        ["message"] = "This request could not be executed before the completion window expired.",
    });
}
