using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace SharpTune.Tests.Hub;

/// <summary>
/// A tiny Hugging Face Hub on loopback speaking the parts of the protocol the downloader uses: the revision API, HEAD/GET on
/// resolve URLs (LFS files answer with a 302 to a "CDN" path carrying X-Linked-Etag/X-Linked-Size), and Range requests.
/// It can break one transfer half-way or corrupt an LFS file, and records every request.
/// </summary>
public sealed class FakeHub : IDisposable
{
    public sealed record RepoFile(byte[] Content, bool IsLfs)
    {
        public string Sha256 => Convert.ToHexStringLower(SHA256.HashData(Content));

        /// <summary>The git blob id, which the Hub sends as ETag for regular files.</summary>
        public string GitBlobId => Convert.ToHexStringLower(SHA1.HashData(
            [.. Encoding.ASCII.GetBytes($"blob {Content.Length}\0"), .. Content]));

        public string Etag => IsLfs ? Sha256 : GitBlobId;
    }

    public sealed record LoggedRequest(string Method, string Path, string? Range, string? Authorization);

    private readonly HttpListener listener = new();
    private readonly Dictionary<string, (string Commit, Dictionary<string, RepoFile> Files)> repos = new();
    private readonly ConcurrentQueue<LoggedRequest> log = new();
    private readonly Task loop;
    private int dropsLeft;
    private string? dropFile;

    public FakeHub()
    {
        var port = FreePort();
        Endpoint = $"http://127.0.0.1:{port}";
        listener.Prefixes.Add(Endpoint + "/");
        listener.Start();
        loop = Task.Run(ServeAsync);
    }

    public string Endpoint { get; }

    public IReadOnlyList<LoggedRequest> Requests => log.ToArray();

    /// <summary>An LFS file whose CDN download sends wrong bytes of the right length.</summary>
    public string? CorruptFile { get; set; }

    public void AddRepo(string repoId, string commit, Dictionary<string, RepoFile> files) => repos[repoId] = (commit, files);

    /// <summary>The next <paramref name="times"/> full downloads of <paramref name="file"/> stop half-way and drop the connection.</summary>
    public void DropTransferOf(string file, int times = 1)
    {
        dropFile = file;
        dropsLeft = times;
    }

    private static int FreePort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    private async Task ServeAsync()
    {
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await listener.GetContextAsync(); }
            catch (Exception) { return; }
            _ = Task.Run(() => Handle(context));
        }
    }

    private void Handle(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        var path = Uri.UnescapeDataString(request.Url!.AbsolutePath);
        log.Enqueue(new LoggedRequest(request.HttpMethod, path, request.Headers["Range"], request.Headers["Authorization"]));
        try
        {
            if (path.StartsWith("/api/models/", StringComparison.Ordinal)) ServeApi(path, response);
            else if (path.StartsWith("/cdn/", StringComparison.Ordinal)) ServeCdn(path, request, response);
            else if (path.Contains("/resolve/", StringComparison.Ordinal)) ServeResolve(path, request, response);
            else Status(response, 404);
        }
        catch (Exception)
        {
            try { response.Abort(); } catch (Exception) { }
        }
    }

    private void ServeApi(string path, HttpListenerResponse response)
    {
        // /api/models/{org}/{name}/revision/{revision}
        var rest = path["/api/models/".Length..];
        var marker = rest.IndexOf("/revision/", StringComparison.Ordinal);
        if (marker < 0 || !repos.TryGetValue(rest[..marker], out var repo)) { Status(response, 404); return; }
        var revision = rest[(marker + "/revision/".Length)..];
        if (revision != "main" && revision != repo.Commit) { Status(response, 404); return; }
        var body = JsonSerializer.Serialize(new
        {
            id = rest[..marker],
            sha = repo.Commit,
            siblings = repo.Files.Keys.Select(k => new { rfilename = k }),
        });
        var bytes = Encoding.UTF8.GetBytes(body);
        response.ContentType = "application/json";
        response.ContentLength64 = bytes.Length;
        response.OutputStream.Write(bytes);
        response.Close();
    }

    private void ServeResolve(string path, HttpListenerRequest request, HttpListenerResponse response)
    {
        // /{org}/{name}/resolve/{revision}/{file}
        var marker = path.IndexOf("/resolve/", StringComparison.Ordinal);
        var repoId = path[1..marker];
        var rest = path[(marker + "/resolve/".Length)..];
        var slash = rest.IndexOf('/');
        var revision = rest[..slash];
        var fileName = rest[(slash + 1)..];
        if (!repos.TryGetValue(repoId, out var repo) || !repo.Files.TryGetValue(fileName, out var file)
            || (revision != "main" && revision != repo.Commit)) { Status(response, 404); return; }

        response.Headers["X-Repo-Commit"] = repo.Commit;
        if (file.IsLfs)
        {
            response.Headers["X-Linked-Etag"] = $"\"{file.Sha256}\"";
            response.Headers["X-Linked-Size"] = file.Content.Length.ToString();
            response.Headers["ETag"] = $"\"{file.GitBlobId}\"";
            response.Redirect($"{Endpoint}/cdn/{repoId}/{fileName}");
            response.StatusCode = 302;
            response.ContentLength64 = 0;
            response.Close();
            return;
        }
        response.Headers["ETag"] = $"\"{file.GitBlobId}\"";
        SendBytes(fileName, file.Content, request, response);
    }

    private void ServeCdn(string path, HttpListenerRequest request, HttpListenerResponse response)
    {
        var rest = path["/cdn/".Length..];
        var repo = repos.FirstOrDefault(r => rest.StartsWith(r.Key + "/", StringComparison.Ordinal));
        if (repo.Key is null || !repo.Value.Files.TryGetValue(rest[(repo.Key.Length + 1)..], out var file)) { Status(response, 404); return; }
        var fileName = rest[(repo.Key.Length + 1)..];
        var content = file.Content;
        if (fileName == CorruptFile)
        {
            content = (byte[])content.Clone();
            content[content.Length / 2] ^= 0xFF;
        }
        SendBytes(fileName, content, request, response);
    }

    private void SendBytes(string fileName, byte[] content, HttpListenerRequest request, HttpListenerResponse response)
    {
        long start = 0;
        var range = request.Headers["Range"];
        if (range is not null && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            start = long.Parse(range["bytes=".Length..^1]);
            if (start >= content.Length) { Status(response, 416); return; }
            response.StatusCode = 206;
            response.Headers["Content-Range"] = $"bytes {start}-{content.Length - 1}/{content.Length}";
        }
        response.ContentLength64 = content.Length - start;
        if (request.HttpMethod == "HEAD") { response.Close(); return; }

        if (start == 0 && fileName == dropFile && Interlocked.Decrement(ref dropsLeft) >= 0)
        {
            response.OutputStream.Write(content, 0, content.Length / 2);
            response.OutputStream.Flush();
            response.Abort(); // the client sees the connection close before Content-Length bytes arrived
            return;
        }
        response.OutputStream.Write(content, (int)start, (int)(content.Length - start));
        response.Close();
    }

    private static void Status(HttpListenerResponse response, int code)
    {
        response.StatusCode = code;
        response.ContentLength64 = 0;
        response.Close();
    }

    public void Dispose()
    {
        listener.Stop();
        listener.Close();
        try { loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
    }
}
