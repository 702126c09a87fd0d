using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace SharpTune.Hub;

/// <summary>What the Hub's HEAD on <c>resolve/{revision}/{file}</c> says about one file.</summary>
/// <param name="Commit">X-Repo-Commit: the commit the revision resolved to.</param>
/// <param name="Etag">The normalised X-Linked-Etag (LFS: sha256) or ETag (git blob id).</param>
/// <param name="Size">X-Linked-Size or Content-Length.</param>
/// <param name="DownloadUrl">Where the bytes are (the CDN for LFS files).</param>
/// <param name="IsLfs">True when the etag is a sha256 of the content that can be verified.</param>
internal sealed record HubFileMetadata(string Commit, string Etag, long Size, Uri DownloadUrl, bool IsLfs);

/// <summary>Fetches one file into a blob: resumable through <c>{blob}.incomplete</c>, size- and sha256-checked.</summary>
internal sealed class HubFileFetcher(HubHttp http, HubOptions options)
{
    private static readonly Regex Sha256Pattern = new("^[0-9a-f]{64}$", RegexOptions.CultureInvariant);
    private const int BufferSize = 1 << 20;

    public async Task<HubFileMetadata> GetMetadataAsync(string repoId, string revision, string file, CancellationToken ct)
    {
        var url = ResolveUrl(http.Endpoint, repoId, revision, file);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.RequestTimeout);
        using var response = await http.SendAsync(HttpMethod.Head, url, null, followAbsoluteRedirects: false, timeout.Token).ConfigureAwait(false);
        await HubHttp.EnsureSuccessAsync(response, $"looking up {repoId}/{file}@{revision}", ct).ConfigureAwait(false);

        var commit = Header(response, "X-Repo-Commit")
            ?? throw new HubException($"the Hub's answer for {repoId}/{file} has no X-Repo-Commit header; is {http.Endpoint} a Hugging Face Hub?");
        var linkedEtag = Header(response, "X-Linked-Etag");
        var rawEtag = linkedEtag ?? response.Headers.ETag?.ToString() ?? Header(response, "ETag")
            ?? throw new HubException($"the Hub's answer for {repoId}/{file} has no ETag; cannot cache it");
        var etag = HubCache.NormalizeEtag(rawEtag);
        var sizeText = Header(response, "X-Linked-Size");
        long size = sizeText is not null && long.TryParse(sizeText, out var linked) ? linked
            : response.Content.Headers.ContentLength ?? throw new HubException($"the Hub did not say how large {repoId}/{file} is");
        var location = response.Headers.Location is { IsAbsoluteUri: true, IsFile: false } loc && (int)response.StatusCode is >= 300 and < 400 ? loc : url;
        return new HubFileMetadata(commit, etag, size, location, linkedEtag is not null && Sha256Pattern.IsMatch(etag));
    }

    /// <summary>Downloads into <paramref name="blobPath"/>, resuming a partial <c>.incomplete</c> file and retrying broken transfers.</summary>
    public async Task DownloadAsync(HubFileMetadata meta, string blobPath, string displayName, Action<long, string?> report, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(blobPath)!);
        var partial = blobPath + ".incomplete";
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        try
        {
            await FillPartialAsync(meta, partial, hash, displayName, report, ct).ConfigureAwait(false);
        }
        catch (HubIntegrityException)
        {
            File.Delete(partial);
            throw;
        }

        var actualSize = new FileInfo(partial).Length;
        if (actualSize != meta.Size)
        {
            File.Delete(partial);
            throw new HubIntegrityException($"{displayName}: received {actualSize} bytes but the Hub announced {meta.Size}; the partial file was removed.");
        }
        if (meta.IsLfs)
        {
            var actual = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (actual != meta.Etag)
            {
                File.Delete(partial);
                throw new HubIntegrityException($"{displayName}: sha256 {actual} does not match the Hub's {meta.Etag}; the corrupted download was removed.");
            }
        }
        File.Move(partial, blobPath, overwrite: true);
    }

    private async Task FillPartialAsync(HubFileMetadata meta, string partial, IncrementalHash hash, string displayName,
        Action<long, string?> report, CancellationToken ct)
    {
        await using var file = new FileStream(partial, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, BufferSize, useAsync: true);
        if (file.Length > meta.Size) file.SetLength(0); // longer than the file can be: not a prefix of it
        if (file.Length > 0)
        {
            await HashPrefixAsync(file, hash, ct).ConfigureAwait(false);
            report(file.Length, $"resuming {displayName} from byte {file.Length}");
        }

        for (var attempt = 0; file.Length < meta.Size; attempt++)
        {
            try
            {
                await TransferAsync(meta, file, hash, report, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (attempt < options.MaxRetries && IsTransient(e, ct))
            {
                report(file.Length, $"transfer of {displayName} broke at byte {file.Length} ({e.Message}); retrying");
                await Task.Delay(options.RetryDelay * Math.Pow(2, attempt), ct).ConfigureAwait(false);
            }
            catch (Exception e) when (IsTransient(e, ct))
            {
                throw new HubException($"downloading {displayName} failed after {options.MaxRetries} retries at byte {file.Length} of {meta.Size}: {e.Message}. " +
                    "Run the command again to resume from there.", e);
            }
        }
    }

    private async Task TransferAsync(HubFileMetadata meta, FileStream file, IncrementalHash hash, Action<long, string?> report, CancellationToken ct)
    {
        var offset = file.Length;
        var range = offset > 0 ? new RangeHeaderValue(offset, null) : null;
        using var headersTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        headersTimeout.CancelAfter(options.RequestTimeout);
        using var response = await http.SendAsync(HttpMethod.Get, meta.DownloadUrl, range, followAbsoluteRedirects: true, headersTimeout.Token).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
        {
            // The partial file does not fit the remote one: start over.
            RestartFrom0(file, hash);
            throw new IOException("the server refused to resume (HTTP 416)");
        }
        await HubHttp.EnsureSuccessAsync(response, $"downloading {meta.DownloadUrl}", ct).ConfigureAwait(false);
        if (offset > 0 && response.StatusCode != HttpStatusCode.PartialContent) RestartFrom0(file, hash);

        file.Seek(0, SeekOrigin.End);
        await using var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        var buffer = new byte[BufferSize];
        long lastReport = file.Length;
        while (true)
        {
            using var readTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            readTimeout.CancelAfter(options.RequestTimeout);
            int read;
            try
            {
                read = await body.ReadAsync(buffer, readTimeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new IOException($"no data for {options.RequestTimeout.TotalSeconds:0} s");
            }
            if (read == 0) break;
            if (file.Length + read > meta.Size)
                throw new HubIntegrityException($"{meta.DownloadUrl}: the server sent more than the announced {meta.Size} bytes");
            await file.WriteAsync(buffer.AsMemory(0, read), ct).ConfigureAwait(false);
            hash.AppendData(buffer, 0, read);
            if (file.Length - lastReport >= 8 * BufferSize || file.Length == meta.Size)
            {
                report(file.Length, null);
                lastReport = file.Length;
            }
        }
        await file.FlushAsync(ct).ConfigureAwait(false);
        if (file.Length < meta.Size) throw new IOException($"the connection closed at byte {file.Length} of {meta.Size}");
    }

    private static void RestartFrom0(FileStream file, IncrementalHash hash)
    {
        file.SetLength(0);
        hash.GetHashAndReset();
    }

    private static async Task HashPrefixAsync(FileStream file, IncrementalHash hash, CancellationToken ct)
    {
        file.Seek(0, SeekOrigin.Begin);
        var buffer = new byte[BufferSize];
        int read;
        while ((read = await file.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0) hash.AppendData(buffer, 0, read);
    }

    private static bool IsTransient(Exception e, CancellationToken ct) =>
        !ct.IsCancellationRequested && e is IOException or HttpRequestException or HubUnreachableException;

    internal static Uri ResolveUrl(Uri endpoint, string repoId, string revision, string file) =>
        new(endpoint, $"{repoId}/resolve/{Uri.EscapeDataString(revision)}/{string.Join('/', file.Split('/').Select(Uri.EscapeDataString))}");

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? values.FirstOrDefault()
        : response.Content.Headers.TryGetValues(name, out var contentValues) ? contentValues.FirstOrDefault()
        : null;
}
