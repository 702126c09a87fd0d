using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace SharpTune.Server.Api;

/// <summary>
/// An error answered in OpenAI's shape: <c>{"error": {"message", "type", "param", "code"}}</c> with an HTTP status.
/// </summary>
public sealed class ApiException(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    /// <summary>400 naming the offending request field.</summary>
    public static ApiException BadField(string param, string message, string? code = null) => new(400, message, param: param, code: code);

    /// <summary>
    /// The answer to a request whose work was cancelled while the client still waits: 504 when its own request timeout
    /// fired (<paramref name="work"/> names what did not finish), else 503 (the server is shutting down).
    /// </summary>
    internal static ApiException Cancelled(string work, bool timedOut, TimeSpan requestTimeout) => timedOut
        ? new ApiException(504, $"the {work} did not finish within the server's request timeout of {requestTimeout.TotalSeconds:0.###} s", "timeout_error", code: "timeout")
        : new ApiException(503, "the server is shutting down", "server_error");

    /// <summary>The JSON error body.</summary>
    public JsonObject ToJson() => Body(Message, Type, Param, Code);

    /// <summary>An OpenAI error body.</summary>
    public static JsonObject Body(string message, string type, string? param, string? code) => new()
    {
        ["error"] = new JsonObject { ["message"] = message, ["type"] = type, ["param"] = param, ["code"] = code },
    };

    /// <summary>Writes the status and body (when the response has not started).</summary>
    public Task WriteAsync(HttpContext context)
    {
        context.Response.StatusCode = Status;
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(ToJson().ToJsonString(), context.RequestAborted);
    }
}
