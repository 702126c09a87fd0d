using System.Text.RegularExpressions;

namespace SharpTune.Hub;

/// <summary>
/// The Hugging Face hub cache layout, shared with huggingface_hub so either tool reuses the other's files:
/// <c>{cache}/models--{org}--{name}/blobs/{etag}</c> holds each file's bytes once (named by its normalised ETag: the
/// sha256 for LFS files, the git blob id otherwise; <c>{etag}.incomplete</c> while downloading);
/// <c>snapshots/{commit}/{path}</c> are relative symbolic links to <c>../../blobs/{etag}</c> (copies where links fail);
/// <c>refs/{revision}</c> holds the commit hash a branch or tag pointed to.
/// </summary>
public sealed class HubCache(string cacheDir)
{
    private static readonly Regex RepoIdPattern = new(@"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)?$", RegexOptions.CultureInvariant);
    private static readonly Regex CommitPattern = new("^[0-9a-f]{40}$", RegexOptions.CultureInvariant);
    private static readonly Regex SafeEtagPattern = new(@"^[A-Za-z0-9_.\-]+$", RegexOptions.CultureInvariant);

    /// <summary>The cache root (the folder holding <c>models--*</c>).</summary>
    public string Root { get; } = cacheDir;

    /// <summary>True for "name" or "org/name" made of the characters the Hub allows (no "--" or "..").</summary>
    public static bool IsValidRepoId(string repoId) =>
        RepoIdPattern.IsMatch(repoId) && !repoId.Contains("--", StringComparison.Ordinal) && !repoId.Contains("..", StringComparison.Ordinal);

    /// <summary>True when <paramref name="revision"/> is a full 40-hex commit hash.</summary>
    public static bool IsCommitHash(string revision) => CommitPattern.IsMatch(revision);

    /// <summary>An ETag header made into a file name: <c>W/</c> prefix and surrounding quotes removed, as huggingface_hub does.</summary>
    public static string NormalizeEtag(string etag)
    {
        var value = etag.Trim();
        if (value.StartsWith("W/", StringComparison.Ordinal)) value = value[2..];
        value = value.Trim('"');
        if (!SafeEtagPattern.IsMatch(value))
            throw new HubException($"the Hub sent an ETag that cannot name a cache file: '{etag}'");
        return value;
    }

    /// <summary><c>{root}/models--org--name</c>.</summary>
    public string RepoFolder(string repoId)
    {
        if (!IsValidRepoId(repoId))
            throw new ArgumentException($"'{repoId}' is not a Hub repository id (expected org/name)", nameof(repoId));
        return Path.Combine(Root, "models--" + repoId.Replace("/", "--", StringComparison.Ordinal));
    }

    /// <summary>The blob path for a normalised etag.</summary>
    public string BlobPath(string repoId, string etag) => Path.Combine(RepoFolder(repoId), "blobs", etag);

    /// <summary>The snapshot folder for a commit.</summary>
    public string SnapshotFolder(string repoId, string commit) => Path.Combine(RepoFolder(repoId), "snapshots", commit);

    /// <summary>The snapshot entry for a repository file; rejects paths that would leave the snapshot folder.</summary>
    public string PointerPath(string repoId, string commit, string relativeFile)
    {
        var snapshot = Path.GetFullPath(SnapshotFolder(repoId, commit));
        var pointer = Path.GetFullPath(Path.Combine(snapshot, relativeFile));
        if (Path.IsPathRooted(relativeFile) || !pointer.StartsWith(snapshot + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new HubException($"the Hub listed a file path that leaves the snapshot folder: '{relativeFile}'");
        return pointer;
    }

    /// <summary>The commit a revision resolves to from the cache alone: itself when it is a commit hash, else refs/{revision}.</summary>
    public string? CachedCommit(string repoId, string revision)
    {
        if (IsCommitHash(revision)) return revision;
        var refPath = Path.Combine(RepoFolder(repoId), "refs", revision);
        if (!File.Exists(refPath)) return null;
        var commit = File.ReadAllText(refPath).Trim();
        return IsCommitHash(commit) ? commit : null;
    }

    /// <summary>The cached snapshot folder for a revision, or null when it is not cached.</summary>
    public string? TryGetSnapshot(string repoId, string revision)
    {
        var commit = CachedCommit(repoId, revision);
        if (commit is null) return null;
        var folder = SnapshotFolder(repoId, commit);
        return Directory.Exists(folder) ? folder : null;
    }

    /// <summary>Records that <paramref name="revision"/> points at <paramref name="commit"/> (nothing for a commit hash).</summary>
    public void WriteRef(string repoId, string revision, string commit)
    {
        if (revision == commit) return;
        var refPath = Path.Combine(RepoFolder(repoId), "refs", revision);
        // Rewritten only when it changed, so a read-only shared cache still works for cached revisions.
        if (File.Exists(refPath) && File.ReadAllText(refPath).Trim() == commit) return;
        Directory.CreateDirectory(Path.GetDirectoryName(refPath)!);
        File.WriteAllText(refPath, commit);
    }

    /// <summary>True when the snapshot entry exists and, if it is a link, its blob exists too.</summary>
    public static bool PointerIsValid(string pointer)
    {
        var info = new FileInfo(pointer);
        if (!info.Exists && info.LinkTarget is null) return false;
        if (info.LinkTarget is null) return true;
        return info.ResolveLinkTarget(returnFinalTarget: true) is { Exists: true };
    }

    /// <summary>Points the snapshot entry at the blob: a relative symbolic link, or a copy where links are unavailable.</summary>
    public static void LinkPointer(string blob, string pointer)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(pointer)!);
        if (File.Exists(pointer) || new FileInfo(pointer).LinkTarget is not null) File.Delete(pointer);
        var relative = Path.GetRelativePath(Path.GetDirectoryName(pointer)!, blob);
        try
        {
            File.CreateSymbolicLink(pointer, relative);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            // Windows without developer mode cannot create links; huggingface_hub copies in that case too.
            File.Copy(blob, pointer, overwrite: true);
        }
    }
}
