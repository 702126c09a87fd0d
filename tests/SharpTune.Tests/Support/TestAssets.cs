namespace SharpTune.Tests.Support;

/// <summary>Locates the repository and the real assets in ../shared beside it.</summary>
public static class TestAssets
{
    /// <summary>The repository root (the folder holding SharpTune.sln).</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>A checkpoint fixture committed under tests/SharpTune.Tests/Models/Fixtures (config, weights, EXPECTED.json).</summary>
    public static string ModelFixture(string name) => Path.Combine(RepoRoot, "tests", "SharpTune.Tests", "Models", "Fixtures", name);

    /// <summary>
    /// The shared assets folder: SHARPTUNE_SHARED if set, else the nearest "shared" folder beside the repository or
    /// one of its parents (a git worktree may live deeper than the main checkout). May be absent.
    /// </summary>
    public static string SharedDir { get; } = FindSharedDir();

    private static string FindSharedDir()
    {
        if (Environment.GetEnvironmentVariable("SHARPTUNE_SHARED") is { Length: > 0 } fromEnvironment)
            return Path.GetFullPath(fromEnvironment);
        for (var dir = new DirectoryInfo(RepoRoot).Parent; dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared");
            if (Directory.Exists(Path.Combine(candidate, "models")) || Directory.Exists(Path.Combine(candidate, "tokenizers")))
                return candidate;
        }
        return Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));
    }

    public static string Stories260K => Path.Combine(SharedDir, "models", "stories260K");
    /// <summary>Copies stories260K's files into <paramref name="destination"/> (created), for a test that writes beside them.</summary>
    public static string CopyStories260K(string destination)
    {
        Directory.CreateDirectory(destination);
        foreach (var file in Directory.GetFiles(Stories260K))
            File.Copy(file, Path.Combine(destination, Path.GetFileName(file)));
        return destination;
    }

    public static string Gpt2Tokenizer => Path.Combine(SharedDir, "tokenizers", "gpt2");

    /// <summary>A real tokenizer folder in ../shared/tokenizers (llama3, qwen3, gemma3: the files those models ship).</summary>
    public static string Tokenizer(string name) => Path.Combine(SharedDir, "tokenizers", name);

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "SharpTune.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("cannot find SharpTune.sln above " + AppContext.BaseDirectory);
    }
}

/// <summary>A fact that is reported as skipped, with the reason, when a shared asset folder is absent.</summary>
public sealed class SharedAssetFactAttribute : FactAttribute
{
    public SharedAssetFactAttribute(string relativeToShared)
    {
        var path = Path.Combine(TestAssets.SharedDir, relativeToShared);
        if (!Directory.Exists(path) && !File.Exists(path))
            Skip = $"shared asset absent: {path} (place ../shared beside the repository to run this test)";
    }
}

/// <summary>A theory that is reported as skipped, with the reason, when a shared asset folder is absent.</summary>
public sealed class SharedAssetTheoryAttribute : TheoryAttribute
{
    public SharedAssetTheoryAttribute(string relativeToShared)
    {
        var path = Path.Combine(TestAssets.SharedDir, relativeToShared);
        if (!Directory.Exists(path) && !File.Exists(path))
            Skip = $"shared asset absent: {path} (place ../shared beside the repository to run this test)";
    }
}
