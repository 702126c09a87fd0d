using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SharpTune.IO;

namespace SharpTune.Server.Batches;

/// <summary>
/// Batches on disk, in the jobs folder's <c>batches/</c>: <c>ID.json</c> holds the record (replaced whole by a rename,
/// so a crash leaves the old or the new one, never half of either), and <c>ID.results.jsonl</c> the finished lines,
/// appended as each ends, which a restarted server reads to resume without running them again.
/// <para>
/// One server at a time holds the folder: the store opens <c>.lock</c> there with <see cref="FileShare.None"/> (an
/// exclusive <c>flock</c> on Unix, a share lock on Windows, both dropped by the OS when the process dies), so a second
/// server on the same folder is refused instead of running every unfinished batch a second time.
/// </para>
/// </summary>
internal sealed partial class BatchStore : IDisposable
{
    /// <summary>Where a record the store cannot read is reported, in the batches folder.</summary>
    public const string ErrorLogName = "store-errors.log";

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private readonly string directory;
    private readonly Lock appending = new();
    private readonly FileStream held;

    /// <exception cref="IOException">Another server (or store) holds <paramref name="directory"/>.</exception>
    public BatchStore(string directory)
    {
        this.directory = directory;
        Directory.CreateDirectory(directory);
        var lockPath = Path.Combine(directory, ".lock");
        try { held = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
        catch (IOException e)
        {
            throw new IOException($"the batches folder {Path.GetFullPath(directory)} is held by another SharpTune server ({lockPath} is locked): " +
                "one server runs a jobs folder's batches; stop the other server or give this one a jobs folder of its own", e);
        }
        // Only the holder gets here, so no other server is midway through writing one of these.
        foreach (var temp in Directory.EnumerateFiles(directory, "*.tmp")) File.Delete(temp);
    }

    /// <summary>Whether <paramref name="id"/> has the shape of a batch id this server generates.</summary>
    public static bool IsBatchId(string id) => BatchId().IsMatch(id);

    /// <summary>Replaces the record whole: written aside, flushed to disk, then renamed over the old one.</summary>
    public void Save(BatchRecord batch)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(batch, Json);
        AtomicFile.Write(RecordPath(batch.Id), stream => stream.Write(bytes));
    }

    /// <summary>The batch <paramref name="id"/>; null when there is none, or its record does not read (set aside as <see cref="All"/> does).</summary>
    public BatchRecord? Get(string id)
    {
        if (!IsBatchId(id) || !File.Exists(RecordPath(id))) return null;
        try { return JsonSerializer.Deserialize<BatchRecord>(File.ReadAllBytes(RecordPath(id)), Json) ?? throw new JsonException("the record is JSON null"); }
        catch (JsonException e)
        {
            SetAside(RecordPath(id), e.Message);
            return null;
        }
    }

    /// <summary>
    /// Every batch, newest first. A record that does not read (empty, torn by a disk that lied about a flush, edited by
    /// hand) is renamed to <c>ID.json.corrupt</c> and reported in <see cref="ErrorLogName"/>, rather than failing every
    /// list and stopping the runner for the batches that do read.
    /// </summary>
    public List<BatchRecord> All()
    {
        var records = new List<BatchRecord>();
        foreach (var path in Directory.EnumerateFiles(directory, "batch_*.json").ToList())
        {
            if (!IsBatchId(Path.GetFileNameWithoutExtension(path))) continue;
            try
            {
                records.Add(JsonSerializer.Deserialize<BatchRecord>(File.ReadAllBytes(path), Json)
                    ?? throw new JsonException("the record is JSON null"));
            }
            catch (FileNotFoundException) { }   // removed while listing
            catch (JsonException e) { SetAside(path, e.Message); }
        }
        return records.OrderByDescending(b => b.Sequence).ToList();
    }

    private void SetAside(string path, string reason)
    {
        var aside = path + ".corrupt";
        File.Move(path, aside, overwrite: true);
        File.AppendAllText(Path.Combine(directory, ErrorLogName),
            $"{DateTime.UtcNow:O} the batch record {path} could not be read ({reason}); it was moved to {aside} and its batch is no longer listed or run\n");
    }

    /// <summary>
    /// Called with each line number before its result is written; what it throws, the append throws. Tests play a disk
    /// that fails mid-batch with it, as <see cref="ServerOptions.EngineGate"/> lets them hold the engine.
    /// </summary>
    internal Action<int>? BeforeAppend { get; set; }

    /// <summary>Records that line <paramref name="line"/> (1-based, of the input file) ended with <paramref name="output"/>.</summary>
    public void AppendResult(string id, int line, JsonObject output)
    {
        BeforeAppend?.Invoke(line);
        var text = new JsonObject { ["line"] = line, ["output"] = output }.ToJsonString() + "\n";
        lock (appending)
        {
            using var stream = new FileStream(ResultsPath(id), FileMode.Append, FileAccess.Write, FileShare.Read);
            stream.Write(Encoding.UTF8.GetBytes(text));
            stream.Flush(flushToDisk: true);
        }
    }

    /// <summary>
    /// The lines finished so far, by input line. A last line cut short by a crash is dropped (and cut from the file, so
    /// the next append starts a line of its own): that request runs again.
    /// </summary>
    public SortedDictionary<int, JsonObject> Results(string id)
    {
        var results = new SortedDictionary<int, JsonObject>();
        var path = ResultsPath(id);
        if (!File.Exists(path)) return results;
        lock (appending)
        {
            var bytes = File.ReadAllBytes(path);
            var end = 0;
            var start = 0;
            for (var i = 0; i < bytes.Length; i++)
            {
                if (bytes[i] != (byte)'\n') continue;
                var entry = JsonNode.Parse(bytes.AsSpan(start, i - start))!.AsObject();
                results[entry["line"]!.GetValue<int>()] = entry["output"]!.AsObject();
                start = end = i + 1;
            }
            if (end < bytes.Length)
                using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write)) stream.SetLength(end);
        }
        return results;
    }

    public bool HasResults(string id) => File.Exists(ResultsPath(id));

    public void DeleteResults(string id)
    {
        if (File.Exists(ResultsPath(id))) File.Delete(ResultsPath(id));
    }

    /// <summary>Releases the folder to the next server.</summary>
    public void Dispose() => held.Dispose();

    private string RecordPath(string id) => IsBatchId(id) ? Path.Combine(directory, id + ".json") : throw new ArgumentException($"'{id}' is not a batch id");

    private string ResultsPath(string id) => IsBatchId(id) ? Path.Combine(directory, id + ".results.jsonl") : throw new ArgumentException($"'{id}' is not a batch id");

    /// <summary>A new batch id: OpenAI's <c>batch_</c> prefix and random hex.</summary>
    public static string NewId() => "batch_" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(12));

    [GeneratedRegex("^batch_[0-9a-f]{24}$")]
    private static partial Regex BatchId();
}
