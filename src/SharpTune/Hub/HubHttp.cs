using System.Net;
using System.Net.Http.Headers;

namespace SharpTune.Hub;

/// <summary>
/// HTTP to the Hub with huggingface_hub's rules: the token goes only to the Hub's own host; metadata requests follow
/// relative redirects (renamed repos) but stop at absolute ones (the CDN), whose own headers carry the LFS metadata.
/// </summary>
internal sealed class HubHttp : IDisposable
{
    private const int MaxRedirects = 10;
    private readonly HttpClient client;
    private readonly HubOptions options;
    private readonly Uri endpoint;

    public HubHttp(HubOptions options)
    {
        this.options = options;
        endpoint = new Uri(options.Endpoint.TrimEnd('/') + "/");
        client = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = options.RequestTimeout,
        })
        { Timeout = Timeout.InfiniteTimeSpan };
        client.DefaultRequestHeaders.UserAgent.ParseAdd("sharptune/0.1");
    }

    public Uri Endpoint => endpoint;

    /// <summary>Sends a request, following redirects as described above; the caller disposes the response.</summary>
    public async Task<HttpResponseMessage> SendAsync(HttpMethod method, Uri url, RangeHeaderValue? range,
        bool followAbsoluteRedirects, CancellationToken ct)
    {
        for (var hop = 0; ; hop++)
        {
            using var request = new HttpRequestMessage(method, url);
            request.Headers.AcceptEncoding.ParseAdd("identity");
            if (range is not null) request.Headers.Range = range;
            if (options.Token is not null && SameOrigin(url, endpoint))
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", options.Token);

            HttpResponseMessage response;
            try
            {
                response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            }
            catch (HttpRequestException e)
            {
                throw new HubUnreachableException($"cannot reach the Hub at {url.GetLeftPart(UriPartial.Authority)}: {e.Message}", e);
            }
            var status = (int)response.StatusCode;
            if (status is < 300 or >= 400 || response.Headers.Location is null) return response;
            var location = response.Headers.Location;
            // On Unix a "/path" Location can parse as an absolute file: URI; it is a relative redirect all the same.
            var relative = !location.IsAbsoluteUri || location.IsFile;
            if (relative || followAbsoluteRedirects)
            {
                if (hop >= MaxRedirects) throw new HubException($"too many redirects fetching {url}");
                url = relative ? new Uri(url, location.OriginalString) : location;
                response.Dispose();
                continue;
            }
            return response; // an absolute redirect to another host: the caller reads its headers
        }
    }

    /// <summary>Turns Hub error statuses into messages a user can act on.</summary>
    public static async Task EnsureSuccessAsync(HttpResponseMessage response, string what, CancellationToken ct)
    {
        if (response.IsSuccessStatusCode || (int)response.StatusCode is >= 300 and < 400) return;
        var body = "";
        try { body = (await response.Content.ReadAsStringAsync(ct).ConfigureAwait(false)).Trim(); } catch (IOException) { }
        if (body.Length > 300) body = body[..300];
        var hint = response.StatusCode switch
        {
            HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden =>
                " The repository is private or gated: accept its terms on the Hub and set HF_TOKEN to an access token.",
            HttpStatusCode.NotFound => " Check the repository id, revision and file name.",
            _ => "",
        };
        throw new HubException($"{what} failed: HTTP {(int)response.StatusCode} {response.ReasonPhrase}.{hint}{(body.Length > 0 ? " Server said: " + body : "")}");
    }

    private static bool SameOrigin(Uri a, Uri b) =>
        Uri.Compare(a, b, UriComponents.SchemeAndServer, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0;

    public void Dispose() => client.Dispose();
}

/// <summary>The Hub could not be reached at all (no connection); cached snapshots may still be used.</summary>
public sealed class HubUnreachableException(string message, Exception inner) : HubException(message, inner);
