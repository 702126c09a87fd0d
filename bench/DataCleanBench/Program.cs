// Benchmark of `data clean` with exact and near-duplicate removal on synthetic short rows.
// Usage: dotnet run -c Release --project bench/DataCleanBench -- [rows=1000000] [--scaling]
// Rows are ~12-word sentences from a 5,000-word vocabulary; 5% are exact copies and 5% one-word edits of earlier
// rows (a one-word edit of a 12-word row has character-5-gram Jaccard of roughly 0.6-0.9, so only some of those
// reach the 0.8 threshold). With --scaling it also runs 1/4 and 1/2 of the rows to show how time grows.
using System.Diagnostics;
using System.Text.Json.Nodes;
using SharpTune.Data.Curation;

int rows = args.FirstOrDefault(a => !a.StartsWith("--")) is { } n ? int.Parse(n) : 1_000_000;
var sizes = args.Contains("--scaling") ? new[] { rows / 4, rows / 2, rows } : new[] { rows };
var dir = Path.Combine(Path.GetTempPath(), "sharptune-cleanbench");
Directory.CreateDirectory(dir);
Console.WriteLine($"| rows | seconds | rows/s | kept | exact dup | near dup | peak working set (MB) |");
Console.WriteLine($"|---:|---:|---:|---:|---:|---:|---:|");
foreach (var size in sizes)
{
    var input = Path.Combine(dir, $"in-{size}.jsonl");
    Generate(input, size, seed: 1);
    GC.Collect();
    var clock = Stopwatch.StartNew();
    var report = new DataCleaner().CleanFile(input, Path.Combine(dir, "out.jsonl"), Path.Combine(dir, "rejects.jsonl"));
    clock.Stop();
    Console.WriteLine($"| {size:N0} | {clock.Elapsed.TotalSeconds:F1} | {size / clock.Elapsed.TotalSeconds:N0} | {report.Kept:N0} | " +
                      $"{report.RejectedByReason.GetValueOrDefault("exact_duplicate"):N0} | {report.RejectedByReason.GetValueOrDefault("near_duplicate"):N0} | " +
                      $"{Process.GetCurrentProcess().PeakWorkingSet64 / (1 << 20):N0} |");
}
Directory.Delete(dir, recursive: true);

static void Generate(string path, int count, int seed)
{
    var rng = new Random(seed);
    var vocabulary = Enumerable.Range(0, 5000).Select(_ => new string(Enumerable.Range(0, rng.Next(3, 9)).Select(_ => (char)('a' + rng.Next(26))).ToArray())).ToArray();
    var recent = new List<string[]>();
    using var writer = new StreamWriter(path);
    for (int i = 0; i < count; i++)
    {
        string[] words;
        double roll = rng.NextDouble();
        if (roll < 0.05 && recent.Count > 0) words = recent[rng.Next(recent.Count)];
        else if (roll < 0.10 && recent.Count > 0)
        {
            words = (string[])recent[rng.Next(recent.Count)].Clone();
            words[rng.Next(words.Length)] = vocabulary[rng.Next(vocabulary.Length)];
        }
        else
        {
            words = Enumerable.Range(0, 12).Select(_ => vocabulary[rng.Next(vocabulary.Length)]).ToArray();
            if (recent.Count < 10_000) recent.Add(words); else recent[rng.Next(recent.Count)] = words;
        }
        writer.WriteLine(new JsonObject { ["text"] = string.Join(' ', words) }.ToJsonString());
    }
}
