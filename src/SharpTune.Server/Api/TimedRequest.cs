using Microsoft.AspNetCore.Http;

namespace SharpTune.Server.Api;

/// <summary>
/// The frame the one-shot model endpoints (<c>/v1/embeddings</c>, <c>/classify</c>, <c>/rerank</c>, <c>/score</c>) run
/// a request in: the server's request timeout linked to the client's abort, nothing answered to a client that went away,
/// and any other failure answered as the endpoint's own API error unless the response has already begun.
/// </summary>
internal static class TimedRequest
{
    /// <param name="handle">Serves the request, given the token that ends it at the timeout or the client's abort.</param>
    /// <param name="errorFor">The API error for a failure, given whether the request's own token had fired.</param>
    public static async Task RunAsync(HttpContext context, TimeSpan timeout, Func<CancellationToken, Task> handle,
        Func<Exception, bool, ApiException> errorFor)
    {
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        cancellation.CancelAfter(timeout);
        try
        {
            await handle(cancellation.Token);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nothing to answer.
        }
        catch (Exception e)
        {
            var error = errorFor(e, cancellation.IsCancellationRequested);
            if (!context.Response.HasStarted) await error.WriteAsync(context);
        }
    }
}
