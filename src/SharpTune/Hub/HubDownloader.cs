using System.Text.Json;

namespace SharpTune.Hub;

/// <summary>
/// Downloads a model repository snapshot from the Hugging Face Hub into the shared hub cache (see <see cref="HubCache"/>),
/// the way huggingface_hub's <c>snapshot_download</c> does: one API call lists the files of the revision's commit, files
/// already in the snapshot cost no request, blobs already present (from any tool) are linked instead of fetched.
/// </summary>
public static class HubDownloader
{
    /// <summary>
    /// Fetches <paramref name="repoId"/> at <paramref name="revision"/> (default "main") and returns the local snapshot
    /// folder <c>{cache}/models--org--name/snapshots/{commit}</c>. In offline mode, or when the Hub cannot be reached, the
    /// snapshot is resolved from the cache alone.
    /// </summary>
    /// <exception cref="HubOfflineException">Offline (or unreachable) and the revision is not cached.</exception>
    /// <exception cref="HubIntegrityException">A file's size or sha256 did not match; it was not stored.</exception>
    /// <exception cref="HubException">The Hub refused the request (not found, gated, private…); the message says why.</exception>
    public static async Task<string> DownloadAsync(string repoId, string? revision, HubOptions options,
        IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        revision ??= "main";
        var cache = new HubCache(options.CacheDir);
        cache.RepoFolder(repoId); // validates the id before any request
        if (options.Offline) return FromCacheOrThrow(cache, repoId, revision, "offline mode (HF_HUB_OFFLINE) is on");

        using var http = new HubHttp(options);
        RepoListing listing;
        try
        {
            listing = await ListFilesAsync(http, options, repoId, revision, cancellationToken).ConfigureAwait(false);
        }
        catch (HubUnreachableException e)
        {
            var cached = cache.TryGetSnapshot(repoId, revision);
            if (cached is null) throw new HubOfflineException(OfflineMessage(cache, repoId, revision, e.Message), e);
            progress?.Report(new DownloadProgress("", 0, 0, 0, null, $"{e.Message}; using the cached snapshot {cached}"));
            return cached;
        }

        var files = listing.Files.Where(f => FilePattern.Passes(f, options.AllowPatterns, options.IgnorePatterns)).ToList();
        if (files.Count == 0)
            throw new HubException($"{repoId}@{revision} has no files matching the include patterns " +
                $"({string.Join(", ", options.AllowPatterns ?? ["*"])}) outside the ignored ones ({string.Join(", ", options.IgnorePatterns)}).");
        cache.WriteRef(repoId, revision, listing.Commit);
        Directory.CreateDirectory(cache.SnapshotFolder(repoId, listing.Commit));

        var fetcher = new HubFileFetcher(http, options);
        for (var i = 0; i < files.Count; i++)
        {
            var file = files[i];
            var index = i + 1;
            var pointer = cache.PointerPath(repoId, listing.Commit, file);
            if (HubCache.PointerIsValid(pointer))
            {
                progress?.Report(new DownloadProgress(file, index, files.Count, new FileInfo(pointer).Length, null, "cached"));
                continue;
            }
            var meta = await fetcher.GetMetadataAsync(repoId, listing.Commit, file, cancellationToken).ConfigureAwait(false);
            var blob = cache.BlobPath(repoId, meta.Etag);
            if (File.Exists(blob) && new FileInfo(blob).Length == meta.Size)
            {
                progress?.Report(new DownloadProgress(file, index, files.Count, meta.Size, meta.Size, "blob already cached"));
            }
            else
            {
                await fetcher.DownloadAsync(meta, blob, $"{repoId}/{file}",
                    (done, note) => progress?.Report(new DownloadProgress(file, index, files.Count, done, meta.Size, note)),
                    cancellationToken).ConfigureAwait(false);
            }
            HubCache.LinkPointer(blob, pointer);
        }
        return cache.SnapshotFolder(repoId, listing.Commit);
    }

    /// <summary>The cached snapshot for a revision without any network access, or null when it is not cached.</summary>
    public static string? TryGetCached(string repoId, string? revision, HubOptions options) =>
        new HubCache(options.CacheDir).TryGetSnapshot(repoId, revision ?? "main");

    private sealed record RepoListing(string Commit, IReadOnlyList<string> Files);

    private static async Task<RepoListing> ListFilesAsync(HubHttp http, HubOptions options, string repoId, string revision, CancellationToken ct)
    {
        var url = new Uri(http.Endpoint, $"api/models/{repoId}/revision/{Uri.EscapeDataString(revision)}");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.RequestTimeout);
        using var response = await http.SendAsync(HttpMethod.Get, url, null, followAbsoluteRedirects: false, timeout.Token).ConfigureAwait(false);
        await HubHttp.EnsureSuccessAsync(response, $"listing {repoId}@{revision}", ct).ConfigureAwait(false);
        var json = await response.Content.ReadAsStringAsync(timeout.Token).ConfigureAwait(false);
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            var commit = root.TryGetProperty("sha", out var sha) && sha.ValueKind == JsonValueKind.String ? sha.GetString()! : null;
            if (commit is null || !HubCache.IsCommitHash(commit))
                throw new HubException($"{url}: the answer has no valid 'sha' commit hash field");
            if (!root.TryGetProperty("siblings", out var siblings) || siblings.ValueKind != JsonValueKind.Array)
                throw new HubException($"{url}: the answer has no 'siblings' file list");
            var files = new List<string>();
            foreach (var sibling in siblings.EnumerateArray())
            {
                if (!sibling.TryGetProperty("rfilename", out var name) || name.ValueKind != JsonValueKind.String)
                    throw new HubException($"{url}: a 'siblings' entry has no 'rfilename' string field");
                files.Add(name.GetString()!);
            }
            return new RepoListing(commit, files);
        }
        catch (JsonException e)
        {
            throw new HubException($"{url}: the answer is not valid JSON ({e.Message})", e);
        }
    }

    private static string FromCacheOrThrow(HubCache cache, string repoId, string revision, string reason) =>
        cache.TryGetSnapshot(repoId, revision) ?? throw new HubOfflineException(OfflineMessage(cache, repoId, revision, reason));

    private static string OfflineMessage(HubCache cache, string repoId, string revision, string reason) =>
        $"{repoId}@{revision} is not in the Hugging Face cache at {cache.RepoFolder(repoId)} and {reason}. " +
        "Download it once with network access (`sharptune download " + repoId + "`), or unset HF_HUB_OFFLINE.";
}
