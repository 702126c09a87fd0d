namespace SharpTune.Data.Readers;

/// <summary>
/// Reads a dataset file or folder as a stream of <see cref="DataRow"/>s, choosing the reader by extension
/// (<c>.jsonl</c>/<c>.ndjson</c>, <c>.json</c> as JSON Lines or one array of objects, <c>.csv</c>, <c>.tsv</c>, <c>.parquet</c>) or, for a folder, reading
/// every Parquet shard in it. Malformed rows throw or go to the <see cref="RejectLog"/> according to the policy;
/// either way <see cref="RowsRead"/> counts them, so kept + rejected = read.
/// </summary>
public sealed class DatasetReader
{
    private readonly RejectPolicy _policy;
    private readonly RejectLog? _rejects;

    /// <param name="policy">Throw on a malformed row, or record it and go on.</param>
    /// <param name="rejects">Where recorded rows go; required with <see cref="RejectPolicy.Record"/>.</param>
    public DatasetReader(RejectPolicy policy = RejectPolicy.Throw, RejectLog? rejects = null)
    {
        if (policy == RejectPolicy.Record && rejects is null)
            throw new ArgumentException("RejectPolicy.Record needs a RejectLog to record into", nameof(rejects));
        _policy = policy;
        _rejects = rejects;
    }

    /// <summary>Rows seen so far, malformed ones included.</summary>
    public long RowsRead { get; private set; }

    /// <summary>Malformed rows recorded so far.</summary>
    public long RowsRejected { get; private set; }

    /// <summary>Streams the rows of a file, or of every Parquet shard in a folder.</summary>
    public IEnumerable<DataRow> Read(string path)
    {
        foreach (var file in Files(path))
        foreach (var result in ReadFile(file))
        {
            RowsRead++;
            if (result.Row is not null)
            {
                yield return result.Row;
                continue;
            }
            if (_policy == RejectPolicy.Throw) throw result.Error!;
            RowsRejected++;
            _rejects!.Add(result.Error!, result.RawText);
        }
    }

    /// <summary>Reads every row into memory (for splitting and inspection of datasets that fit).</summary>
    public static List<DataRow> ReadAll(string path) => new DatasetReader().Read(path).ToList();

    /// <summary>The files a path stands for: itself, or a folder's Parquet shards (else its JSONL/CSV files).</summary>
    public static IReadOnlyList<string> Files(string path)
    {
        if (File.Exists(path)) return [path];
        if (!Directory.Exists(path)) throw new FileNotFoundException($"dataset not found: {path}", path);
        var shards = ParquetRowReader.Shards(path);
        if (shards.Count > 0) return shards;
        var other = Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
            .Where(f => IsKnownExtension(f)).Order(StringComparer.Ordinal).ToList();
        return other.Count > 0 ? other
            : throw new FileNotFoundException($"no .parquet, .jsonl or .csv files in folder {path}", path);
    }

    private static bool IsKnownExtension(string file) =>
        Path.GetExtension(file).ToLowerInvariant() is ".jsonl" or ".ndjson" or ".json" or ".csv" or ".tsv" or ".parquet";

    private static IEnumerable<RowReadResult> ReadFile(string file) => Path.GetExtension(file).ToLowerInvariant() switch
    {
        ".jsonl" or ".ndjson" => JsonlRowReader.Read(file),
        ".json" => JsonArrayRowReader.LooksLikeArray(file) ? JsonArrayRowReader.Read(file) : JsonlRowReader.Read(file),
        ".csv" => CsvRowReader.Read(file),
        ".tsv" => CsvRowReader.Read(file, '\t'),
        ".parquet" => ParquetRowReader.Read(file),
        var ext => throw new NotSupportedException(
            $"{file}: unknown dataset extension '{ext}' (expected .jsonl, .csv, .tsv or .parquet, or a folder of .parquet shards)"),
    };
}
