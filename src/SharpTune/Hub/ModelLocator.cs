namespace SharpTune.Hub;

/// <summary>Turns what a user typed after <c>--model</c> into a local model directory.</summary>
public static class ModelLocator
{
    /// <summary>
    /// An existing directory is returned as is. Otherwise <paramref name="modelOrRepoId"/> must look like
    /// <c>org/name</c> (optionally <c>org/name@revision</c>): its cached snapshot is used when present (no network), else
    /// it is downloaded with <paramref name="options"/> (default: from the environment).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">Neither a directory nor a repository id.</exception>
    public static async Task<string> ResolveAsync(string modelOrRepoId, HubOptions? options = null,
        IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (Directory.Exists(modelOrRepoId)) return Path.GetFullPath(modelOrRepoId);
        // A file (a data file given by mistake, a lone config.json) would otherwise read as an "org/name" id and fail on the network.
        if (File.Exists(modelOrRepoId))
            throw new DirectoryNotFoundException($"'{modelOrRepoId}' is a file; give the model's folder (config.json, tokenizer and weights) or a Hub repository id");
        var (repoId, revision) = Parse(modelOrRepoId);
        options ??= HubOptions.FromEnvironment();
        return HubDownloader.TryGetCached(repoId, revision, options)
            ?? await HubDownloader.DownloadAsync(repoId, revision, options, progress, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Synchronous <see cref="ResolveAsync"/> for command-line code.</summary>
    public static string Resolve(string modelOrRepoId, HubOptions? options = null, IProgress<DownloadProgress>? progress = null) =>
        ResolveAsync(modelOrRepoId, options, progress).GetAwaiter().GetResult();

    /// <summary>True when the text is a Hub id ("org/name" or "org/name@revision") rather than a path.</summary>
    public static bool LooksLikeRepoId(string text)
    {
        var at = text.IndexOf('@');
        var id = at < 0 ? text : text[..at];
        return id.Contains('/') && HubCache.IsValidRepoId(id) && (at < 0 || at < text.Length - 1);
    }

    private static (string RepoId, string? Revision) Parse(string text)
    {
        if (!LooksLikeRepoId(text))
            throw new DirectoryNotFoundException(
                $"'{text}' is not a directory, nor a Hugging Face repository id like 'org/name' or 'org/name@revision'.");
        var at = text.IndexOf('@');
        return at < 0 ? (text, null) : (text[..at], text[(at + 1)..]);
    }
}
