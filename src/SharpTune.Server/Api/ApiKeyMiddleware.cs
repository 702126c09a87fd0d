using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace SharpTune.Server.Api;

/// <summary>
/// Requires <c>Authorization: Bearer &lt;key&gt;</c> with one of the configured keys on /v1, /admin and vLLM's /classify,
/// /rerank, /v2/rerank and /score (which run the model, so they are not left open as vLLM's /v1-only key check leaves
/// them); health, readiness and metrics
/// stay open for probes and scrapers. Keys are compared in constant time.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, IReadOnlyList<string> keys)
{
    private readonly byte[][] keyBytes = keys.Select(Encoding.UTF8.GetBytes).ToArray();

    public Task InvokeAsync(HttpContext context)
    {
        if (keyBytes.Length == 0 || !IsProtected(context.Request.Path)) return next(context);
        var header = context.Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            return Reject(context, "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'.");
        var presented = Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim());
        var match = false;
        foreach (var key in keyBytes) match |= CryptographicOperations.FixedTimeEquals(presented, key);
        return match ? next(context) : Reject(context, "Incorrect API key provided.");
    }

    private static bool IsProtected(PathString path) =>
        path.StartsWithSegments("/v1") || path.StartsWithSegments("/admin") || path.StartsWithSegments("/classify")
        || path.StartsWithSegments("/rerank") || path.StartsWithSegments("/v2") || path.StartsWithSegments("/score");

    private static Task Reject(HttpContext context, string message)
    {
        context.Response.Headers.WWWAuthenticate = "Bearer";
        return new ApiException(401, message, code: "invalid_api_key").WriteAsync(context);
    }
}
