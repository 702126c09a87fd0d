using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace SharpTune.Server.Api;

/// <summary>
/// Writes server-sent events (<c>data: {json}\n\n</c>) straight into the response's pipe: the JSON is encoded as UTF-8
/// into Kestrel's buffers by one reused <see cref="Utf8JsonWriter"/> (no intermediate string per event), and events are
/// sent when the caller flushes, so a handler that finds several events waiting sends them in one write. The output is
/// byte for byte what <c>"data: " + json.ToJsonString() + "\n\n"</c> gives.
/// </summary>
internal sealed class ServerSentEvents(HttpResponse response)
{
    private readonly PipeWriter body = response.BodyWriter;
    private Utf8JsonWriter? writer;

    /// <summary>Opens an event stream: its content type, no caching, and no response buffering, so each flush is sent at once.</summary>
    public static void Begin(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
    }

    /// <summary>Buffers one <c>data:</c> event holding <paramref name="json"/>; nothing is sent until <see cref="FlushAsync"/>.</summary>
    public void Write(JsonNode json)
    {
        body.Write("data: "u8);
        if (writer is null) writer = new Utf8JsonWriter(body);
        else writer.Reset(body);
        json.WriteTo(writer);
        writer.Flush();
        body.Write("\n\n"u8);
    }

    /// <summary>Buffers the stream's terminator, <c>data: [DONE]</c>.</summary>
    public void WriteDone() => body.Write("data: [DONE]\n\n"u8);

    /// <summary>Sends what was buffered.</summary>
    public async Task FlushAsync(CancellationToken cancellation) => await body.FlushAsync(cancellation);
}
