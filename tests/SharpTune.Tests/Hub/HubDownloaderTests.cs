using System.Security.Cryptography;
using System.Text;
using SharpTune.Hub;

namespace SharpTune.Tests.Hub;

public sealed class HubDownloaderTests : IDisposable
{
    private const string RepoId = "acme/tiny-model";
    private const string Commit = "0123456789abcdef0123456789abcdef01234567";
    private readonly string cacheDir = Path.Combine(Path.GetTempPath(), "sharptune-hub-" + Guid.NewGuid().ToString("N"));
    private readonly FakeHub hub = new();
    private readonly Dictionary<string, FakeHub.RepoFile> files;

    public HubDownloaderTests()
    {
        var weights = new byte[300_000];
        new Random(7).NextBytes(weights);
        files = new()
        {
            ["config.json"] = new(Encoding.UTF8.GetBytes("{\"model_type\":\"llama\",\"hidden_size\":64}"), IsLfs: false),
            ["tokenizer.json"] = new(Encoding.UTF8.GetBytes("{\"version\":\"1.0\",\"model\":{}}"), IsLfs: false),
            ["model.safetensors"] = new(weights, IsLfs: true),
            ["pytorch_model.bin"] = new(new byte[1000], IsLfs: true),
            ["extra/notes.txt"] = new(Encoding.UTF8.GetBytes("nested file"), IsLfs: false),
        };
        hub.AddRepo(RepoId, Commit, files);
    }

    public void Dispose()
    {
        hub.Dispose();
        if (Directory.Exists(cacheDir)) Directory.Delete(cacheDir, recursive: true);
    }

    private HubOptions Options(int maxRetries = 5) => new()
    {
        Endpoint = hub.Endpoint,
        CacheDir = cacheDir,
        MaxRetries = maxRetries,
        RetryDelay = TimeSpan.FromMilliseconds(10),
        RequestTimeout = TimeSpan.FromSeconds(10),
    };

    private static CancellationToken Bounded() => new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    private string RepoFolder => Path.Combine(cacheDir, "models--acme--tiny-model");

    [Fact]
    public async Task FullDownloadLaysOutTheHuggingFaceCache()
    {
        var snapshot = await HubDownloader.DownloadAsync(RepoId, null, Options(), null, Bounded());

        Assert.Equal(Path.Combine(RepoFolder, "snapshots", Commit), snapshot);
        Assert.Equal(Commit, File.ReadAllText(Path.Combine(RepoFolder, "refs", "main")));
        foreach (var name in new[] { "config.json", "tokenizer.json", "model.safetensors", "extra/notes.txt" })
        {
            var pointer = Path.Combine(snapshot, name);
            var depth = name.Count(c => c == '/');
            var expectedTarget = string.Concat(Enumerable.Repeat("../", depth + 2)) + "blobs/" + files[name].Etag;
            Assert.Equal(expectedTarget, new FileInfo(pointer).LinkTarget);
            Assert.Equal(files[name].Content, File.ReadAllBytes(pointer));
            Assert.True(File.Exists(Path.Combine(RepoFolder, "blobs", files[name].Etag)));
        }
        // LFS blobs are named by sha256, regular files by git blob id, as huggingface_hub names them.
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(files["model.safetensors"].Content)), files["model.safetensors"].Etag);
        Assert.False(File.Exists(Path.Combine(snapshot, "pytorch_model.bin")));
        Assert.DoesNotContain(hub.Requests, r => r.Path.EndsWith("pytorch_model.bin"));
        Assert.Empty(Directory.GetFiles(Path.Combine(RepoFolder, "blobs"), "*.incomplete"));
    }

    [Fact]
    public async Task InterruptedTransferResumesWithRange()
    {
        hub.DropTransferOf("model.safetensors");
        var notes = new List<string>();
        var snapshot = await HubDownloader.DownloadAsync(RepoId, null, Options(),
            new SyncProgress(p => { if (p.Note is not null) notes.Add(p.Note); }), Bounded());

        var transfers = hub.Requests.Where(r => r.Method == "GET" && r.Path == "/cdn/acme/tiny-model/model.safetensors").ToList();
        Assert.Equal(2, transfers.Count);
        Assert.Null(transfers[0].Range);
        Assert.Equal("bytes=150000-", transfers[1].Range);
        Assert.Equal(files["model.safetensors"].Content, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        Assert.Contains(notes, n => n.Contains("retrying"));
    }

    [Fact]
    public async Task PartialFileFromAnEarlierRunIsResumed()
    {
        hub.DropTransferOf("model.safetensors");
        await Assert.ThrowsAsync<HubException>(() => HubDownloader.DownloadAsync(RepoId, null, Options(maxRetries: 0), null, Bounded()));
        var partial = Path.Combine(RepoFolder, "blobs", files["model.safetensors"].Etag + ".incomplete");
        Assert.Equal(150_000, new FileInfo(partial).Length);

        var snapshot = await HubDownloader.DownloadAsync(RepoId, null, Options(maxRetries: 0), null, Bounded());
        Assert.Equal("bytes=150000-", hub.Requests.Last(r => r.Path.StartsWith("/cdn/")).Range);
        Assert.Equal(files["model.safetensors"].Content, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        Assert.False(File.Exists(partial));
    }

    [Fact]
    public async Task CorruptedBlobIsDetectedAndNotStored()
    {
        hub.CorruptFile = "model.safetensors";
        var e = await Assert.ThrowsAsync<HubIntegrityException>(() => HubDownloader.DownloadAsync(RepoId, null, Options(), null, Bounded()));
        Assert.Contains("sha256", e.Message);
        var blob = Path.Combine(RepoFolder, "blobs", files["model.safetensors"].Etag);
        Assert.False(File.Exists(blob));
        Assert.False(File.Exists(blob + ".incomplete"));
        Assert.False(HubCache.PointerIsValid(Path.Combine(RepoFolder, "snapshots", Commit, "model.safetensors")));
    }

    /// <summary>Writes the cache exactly as huggingface_hub would after snapshot_download("acme/tiny-model").</summary>
    private void LayOutCacheAsPythonWould()
    {
        Directory.CreateDirectory(Path.Combine(RepoFolder, "blobs"));
        Directory.CreateDirectory(Path.Combine(RepoFolder, "refs"));
        File.WriteAllText(Path.Combine(RepoFolder, "refs", "main"), Commit);
        foreach (var name in new[] { "config.json", "tokenizer.json", "model.safetensors" })
        {
            File.WriteAllBytes(Path.Combine(RepoFolder, "blobs", files[name].Etag), files[name].Content);
            var pointer = Path.Combine(RepoFolder, "snapshots", Commit, name);
            Directory.CreateDirectory(Path.GetDirectoryName(pointer)!);
            File.CreateSymbolicLink(pointer, "../../blobs/" + files[name].Etag);
        }
    }

    [Fact]
    public async Task CacheLaidOutByPythonIsReusedWithoutAnyRequest()
    {
        LayOutCacheAsPythonWould();
        var viaLocator = await ModelLocator.ResolveAsync(RepoId, Options(), null, Bounded());
        var offline = await HubDownloader.DownloadAsync(RepoId, "main", Options() with { Offline = true }, null, Bounded());

        var expected = Path.Combine(RepoFolder, "snapshots", Commit);
        Assert.Equal(expected, viaLocator);
        Assert.Equal(expected, offline);
        Assert.Empty(hub.Requests);
        Assert.Equal(files["config.json"].Content, File.ReadAllBytes(Path.Combine(viaLocator, "config.json")));
    }

    [Fact]
    public async Task OnlineRefreshOfACachedSnapshotFetchesOnlyTheListingAndMissingFiles()
    {
        LayOutCacheAsPythonWould();
        await HubDownloader.DownloadAsync(RepoId, null, Options(), null, Bounded());

        // One listing call, and requests only for the file the cache lacked.
        Assert.Single(hub.Requests, r => r.Path.StartsWith("/api/"));
        Assert.All(hub.Requests.Where(r => !r.Path.StartsWith("/api/")), r => Assert.EndsWith("extra/notes.txt", r.Path));
    }

    [Fact]
    public async Task BlobAlreadyCachedIsLinkedNotDownloaded()
    {
        LayOutCacheAsPythonWould();
        File.Delete(Path.Combine(RepoFolder, "snapshots", Commit, "model.safetensors"));
        var snapshot = await HubDownloader.DownloadAsync(RepoId, null, Options() with { AllowPatterns = ["*.safetensors"] }, null, Bounded());

        Assert.DoesNotContain(hub.Requests, r => r.Method == "GET" && !r.Path.StartsWith("/api/"));
        Assert.Contains(hub.Requests, r => r.Method == "HEAD" && r.Path.EndsWith("model.safetensors"));
        Assert.Equal(files["model.safetensors"].Content, File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
    }

    [Fact]
    public async Task OfflineWithoutCacheIsAClearError()
    {
        var e = await Assert.ThrowsAsync<HubOfflineException>(() =>
            HubDownloader.DownloadAsync(RepoId, null, Options() with { Offline = true }, null, Bounded()));
        Assert.Contains("HF_HUB_OFFLINE", e.Message);
        Assert.Contains(RepoId, e.Message);
        Assert.Empty(hub.Requests);
    }

    [Fact]
    public async Task UnreachableHubFallsBackToTheCache()
    {
        LayOutCacheAsPythonWould();
        var unreachable = Options() with { Endpoint = "http://127.0.0.1:9" };
        Assert.Equal(Path.Combine(RepoFolder, "snapshots", Commit), await HubDownloader.DownloadAsync(RepoId, null, unreachable, null, Bounded()));
        await Assert.ThrowsAsync<HubOfflineException>(() => HubDownloader.DownloadAsync("acme/other", null, unreachable, null, Bounded()));
    }

    [Fact]
    public async Task TokenIsSentAsBearer()
    {
        await HubDownloader.DownloadAsync(RepoId, null, Options() with { Token = "hf_test_token", AllowPatterns = ["*.json"] }, null, Bounded());
        Assert.NotEmpty(hub.Requests);
        Assert.All(hub.Requests, r => Assert.Equal("Bearer hf_test_token", r.Authorization));
    }

    [Fact]
    public async Task UnknownRepoIsAnActionableError()
    {
        var e = await Assert.ThrowsAsync<HubException>(() => HubDownloader.DownloadAsync("acme/missing", null, Options(), null, Bounded()));
        Assert.Contains("404", e.Message);
        Assert.Contains("acme/missing", e.Message);
    }

    private sealed class SyncProgress(Action<DownloadProgress> handler) : IProgress<DownloadProgress>
    {
        public void Report(DownloadProgress value) => handler(value);
    }
}
