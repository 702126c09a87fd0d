using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace SharpTune.Server.Batches;

/// <summary>What an endpoint answered a request run in-process: the HTTP status and the JSON body.</summary>
internal sealed record EndpointAnswer(int StatusCode, JsonNode? Body);

/// <summary>
/// The JSON endpoints a batch line may name, each the very handler the live route runs, called in-process with a
/// request context of its own (body in memory, answer captured) instead of over an HTTP loopback to this server. Lines
/// thus parse, validate, queue on the engine and shape their answers exactly as live requests do.
/// </summary>
internal sealed class InProcessEndpoints
{
    private readonly Dictionary<string, RequestDelegate> handlers = new(StringComparer.Ordinal);

    /// <summary>The paths registered, in registration order.</summary>
    public IReadOnlyCollection<string> Paths => handlers.Keys;

    public void Add(string path, RequestDelegate handler) => handlers.Add(path, handler);

    public IEnumerable<(string Path, RequestDelegate Handler)> Handlers => handlers.Select(h => (h.Key, h.Value));

    /// <summary>
    /// Runs <paramref name="body"/> through the handler of <paramref name="path"/>. <paramref name="cancellation"/> plays
    /// the client going away: the handler then stops and answers nothing, and this throws. An answer the handler wrote
    /// although the cancellation came (one that finished right as a batch's window ended) is returned, the work being
    /// done, unless it is a server error: that may be the handler's report of the stop itself (503 shutting down), and the
    /// line is better run again or listed as expired.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled before the handler answered, or answered with a server error.</exception>
    public async Task<EndpointAnswer> RunAsync(string path, JsonObject body, string requestId, CancellationToken cancellation)
    {
        var handler = handlers[path];
        var bytes = JsonSerializer.SerializeToUtf8Bytes(body);
        var context = new DefaultHttpContext { RequestAborted = cancellation };
        context.Request.Method = HttpMethods.Post;
        context.Request.Path = path;
        context.Request.ContentType = "application/json";
        context.Request.ContentLength = bytes.Length;
        context.Request.Body = new MemoryStream(bytes, writable: false);
        context.Response.Headers["x-request-id"] = requestId;
        using var answer = new MemoryStream();
        context.Response.Body = answer;
        await handler(context);
        if (answer.Length == 0 || context.Response.StatusCode >= 500) cancellation.ThrowIfCancellationRequested();
        JsonNode? json = null;
        if (answer.Length > 0)
        {
            try { json = JsonNode.Parse(answer.GetBuffer().AsSpan(0, (int)answer.Length)); }
            catch (JsonException) { json = JsonValue.Create(System.Text.Encoding.UTF8.GetString(answer.GetBuffer(), 0, (int)answer.Length)); }
        }
        return new EndpointAnswer(context.Response.StatusCode, json);
    }
}
