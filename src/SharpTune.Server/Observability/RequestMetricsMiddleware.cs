using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace SharpTune.Server.Observability;

/// <summary>Counts every request by route and status and times it; a client that hung up is recorded as 499 (nginx's convention).</summary>
internal sealed class RequestMetricsMiddleware(RequestDelegate next, ServerMetrics metrics)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await next(context);
        }
        finally
        {
            var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
            var status = context.RequestAborted.IsCancellationRequested ? 499 : context.Response.StatusCode;
            metrics.RequestCompleted(route, status, Stopwatch.GetElapsedTime(started));
        }
    }
}
