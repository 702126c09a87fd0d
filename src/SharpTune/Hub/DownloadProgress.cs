namespace SharpTune.Hub;

/// <summary>Progress of a snapshot download, reported per file and as bytes arrive.</summary>
/// <param name="FileName">The repository-relative file being fetched.</param>
/// <param name="FileIndex">1-based index of the file among <paramref name="FileCount"/>.</param>
/// <param name="FileCount">How many files the snapshot has after filtering.</param>
/// <param name="BytesDone">Bytes of this file present locally so far (including a resumed prefix).</param>
/// <param name="BytesTotal">The file's size when known.</param>
/// <param name="Note">A remark worth showing the user (cache hit, resume, retry, offline fallback), or null.</param>
public sealed record DownloadProgress(string FileName, int FileIndex, int FileCount, long BytesDone, long? BytesTotal, string? Note = null);
