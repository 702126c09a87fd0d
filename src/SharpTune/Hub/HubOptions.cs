namespace SharpTune.Hub;

/// <summary>Where and how to reach the Hugging Face Hub and its local cache.</summary>
public sealed record HubOptions
{
    /// <summary>Files SharpTune never loads (pickled PyTorch checkpoints, TensorFlow/Flax weights), skipped unless asked for.</summary>
    public static IReadOnlyList<string> DefaultIgnorePatterns { get; } =
        ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.h5", "*.msgpack", "*.ot"];

    /// <summary>The Hub's base URL (HF_ENDPOINT), without a trailing slash.</summary>
    public string Endpoint { get; init; } = "https://huggingface.co";

    /// <summary>The access token sent as <c>Authorization: Bearer</c> (HF_TOKEN or the token file under HF_HOME), or null.</summary>
    public string? Token { get; init; }

    /// <summary>The hub cache root holding <c>models--org--name</c> folders (HF_HUB_CACHE, else HF_HOME/hub).</summary>
    public string CacheDir { get; init; } = DefaultCacheDir(_ => null);

    /// <summary>Resolve from the cache only and never touch the network (HF_HUB_OFFLINE=1).</summary>
    public bool Offline { get; init; }

    /// <summary>Only files matching one of these fnmatch patterns are fetched; null fetches every file not ignored.</summary>
    public IReadOnlyList<string>? AllowPatterns { get; init; }

    /// <summary>Files matching one of these fnmatch patterns are skipped. Defaults to <see cref="DefaultIgnorePatterns"/>.</summary>
    public IReadOnlyList<string> IgnorePatterns { get; init; } = DefaultIgnorePatterns;

    /// <summary>How many times a broken transfer is resumed before giving up.</summary>
    public int MaxRetries { get; init; } = 5;

    /// <summary>Pause before the first retry; doubled on each further one.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Timeout for metadata requests and for each read of a transfer.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Options from the process environment, following huggingface_hub's rules.</summary>
    public static HubOptions FromEnvironment() => FromEnvironment(Environment.GetEnvironmentVariable);

    /// <summary>
    /// Options from an environment lookup: HF_ENDPOINT; HF_HUB_CACHE (or the legacy HUGGINGFACE_HUB_CACHE), else
    /// HF_HOME/hub, HF_HOME defaulting to XDG_CACHE_HOME/huggingface or ~/.cache/huggingface; HF_TOKEN, else the file
    /// HF_TOKEN_PATH or HF_HOME/token; HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to 1/ON/YES/TRUE.
    /// </summary>
    public static HubOptions FromEnvironment(Func<string, string?> env)
    {
        var token = NonEmpty(env("HF_TOKEN")) ?? NonEmpty(env("HUGGING_FACE_HUB_TOKEN"));
        if (token is null)
        {
            var tokenPath = NonEmpty(env("HF_TOKEN_PATH")) ?? Path.Combine(HfHome(env), "token");
            if (File.Exists(tokenPath)) token = NonEmpty(File.ReadAllText(tokenPath).Trim());
        }
        return new HubOptions
        {
            Endpoint = (NonEmpty(env("HF_ENDPOINT")) ?? "https://huggingface.co").TrimEnd('/'),
            Token = token,
            CacheDir = DefaultCacheDir(env),
            Offline = IsTrue(env("HF_HUB_OFFLINE")) || IsTrue(env("TRANSFORMERS_OFFLINE")),
        };
    }

    private static string DefaultCacheDir(Func<string, string?> env) =>
        ExpandHome(NonEmpty(env("HF_HUB_CACHE")) ?? NonEmpty(env("HUGGINGFACE_HUB_CACHE")) ?? Path.Combine(HfHome(env), "hub"));

    private static string HfHome(Func<string, string?> env)
    {
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        var xdg = NonEmpty(env("XDG_CACHE_HOME")) ?? Path.Combine(home, ".cache");
        return ExpandHome(NonEmpty(env("HF_HOME")) ?? Path.Combine(xdg, "huggingface"));
    }

    private static string ExpandHome(string path) =>
        path == "~" || path.StartsWith("~/", StringComparison.Ordinal)
            ? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), path.TrimStart('~').TrimStart('/'))
            : path;

    private static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

    private static bool IsTrue(string? value) =>
        value is not null && (value.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE");
}
