using System.Text.RegularExpressions;

namespace SharpTune.Jobs;

/// <summary>
/// The bytes of uploaded and result files, one file per id in one folder. Paths come only from ids this server
/// generated (checked against their exact shape), never from a client's file name, so no upload can name a path.
/// </summary>
internal sealed partial class FileStore
{
    public const string ResultsPurpose = "fine-tune-results";

    private readonly string directory;

    /// <param name="removeUnfinishedUploads">
    /// True for the process that receives uploads (the server): uploads cut short by a crash leave temporaries behind,
    /// never recorded, so they go. A worker sharing the folder passes false, or it would delete uploads in progress.
    /// </param>
    public FileStore(string directory, bool removeUnfinishedUploads)
    {
        this.directory = directory;
        Directory.CreateDirectory(directory);
        if (!removeUnfinishedUploads) return;
        foreach (var temp in Directory.EnumerateFiles(directory, "*.upload")) File.Delete(temp);
    }

    /// <summary>Whether <paramref name="id"/> has the shape of an id this server generates.</summary>
    public static bool IsFileId(string id) => FileId().IsMatch(id);

    /// <summary>The stored bytes of <paramref name="file"/> (JSONL for training files, so the trainer reads them by extension).</summary>
    public string PathOf(StoredFile file) => PathOf(file.Id, file.Purpose);

    public string PathOf(string id, string purpose)
    {
        if (!IsFileId(id)) throw new ArgumentException($"'{id}' is not a file id", nameof(id));
        return Path.Combine(directory, id + (purpose == ResultsPurpose ? ".csv" : ".jsonl"));
    }

    /// <summary>A temporary path for an upload in progress; moved into place by <see cref="Commit"/>.</summary>
    public string TemporaryPath(string id) => PathOf(id, "fine-tune") + ".upload";

    public void Commit(string id, string temporaryPath, string purpose) => File.Move(temporaryPath, PathOf(id, purpose), overwrite: true);

    public void Delete(StoredFile file)
    {
        var path = PathOf(file);
        if (File.Exists(path)) File.Delete(path);
    }

    /// <summary>A client's file name as metadata: its last path segment, printable characters only, at most 255.</summary>
    public static string SanitiseFilename(string? name)
    {
        var last = (name ?? "").Replace('\\', '/').Split('/').LastOrDefault() ?? "";
        var clean = new string(last.Where(c => !char.IsControl(c)).ToArray()).Trim();
        if (clean is "" or "." or "..") clean = "upload.jsonl";
        return clean.Length > 255 ? clean[..255] : clean;
    }

    [GeneratedRegex("^file-[0-9a-f]{24}$")]
    private static partial Regex FileId();
}
