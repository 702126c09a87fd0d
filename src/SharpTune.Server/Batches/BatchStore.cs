using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SharpTune.Server.Batches;

/// <summary>
/// Batches on disk, in the jobs folder's <c>batches/</c>: <c>ID.json</c> holds the record (replaced whole by a rename,
/// so a crash leaves the old or the new one, never half of either), and <c>ID.results.jsonl</c> the finished lines,
/// appended as each ends, which a restarted server reads to resume without running them again.
/// </summary>
internal sealed partial class BatchStore
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private readonly string directory;
    private readonly Lock appending = new();

    public BatchStore(string directory)
    {
        this.directory = directory;
        Directory.CreateDirectory(directory);
        foreach (var temp in Directory.EnumerateFiles(directory, "*.tmp")) File.Delete(temp);
    }

    /// <summary>Whether <paramref name="id"/> has the shape of a batch id this server generates.</summary>
    public static bool IsBatchId(string id) => BatchId().IsMatch(id);

    public void Save(BatchRecord batch)
    {
        var path = RecordPath(batch.Id);
        var temp = path + ".tmp";
        File.WriteAllBytes(temp, JsonSerializer.SerializeToUtf8Bytes(batch, Json));
        File.Move(temp, path, overwrite: true);
    }

    public BatchRecord? Get(string id) =>
        IsBatchId(id) && File.Exists(RecordPath(id)) ? JsonSerializer.Deserialize<BatchRecord>(File.ReadAllBytes(RecordPath(id)), Json) : null;

    /// <summary>Every batch, newest first.</summary>
    public List<BatchRecord> All() => Directory.EnumerateFiles(directory, "batch_*.json")
        .Where(path => IsBatchId(Path.GetFileNameWithoutExtension(path)))
        .Select(path => JsonSerializer.Deserialize<BatchRecord>(File.ReadAllBytes(path), Json)!)
        .OrderByDescending(b => b.Sequence).ToList();

    /// <summary>Records that line <paramref name="line"/> (1-based, of the input file) ended with <paramref name="output"/>.</summary>
    public void AppendResult(string id, int line, JsonObject output)
    {
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

    public void DeleteResults(string id)
    {
        if (File.Exists(ResultsPath(id))) File.Delete(ResultsPath(id));
    }

    private string RecordPath(string id) => IsBatchId(id) ? Path.Combine(directory, id + ".json") : throw new ArgumentException($"'{id}' is not a batch id");

    private string ResultsPath(string id) => IsBatchId(id) ? Path.Combine(directory, id + ".results.jsonl") : throw new ArgumentException($"'{id}' is not a batch id");

    /// <summary>A new batch id: OpenAI's <c>batch_</c> prefix and random hex.</summary>
    public static string NewId() => "batch_" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(12));

    [GeneratedRegex("^batch_[0-9a-f]{24}$")]
    private static partial Regex BatchId();
}
