using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SharpTune.Server.Dashboard;

/// <summary>One run as listed by the dashboard.</summary>
public sealed record RunListing(string Name, DateTimeOffset UpdatedAt, bool HasMetrics);

/// <summary>A run's effective config (config.yaml as written), a summary of its metrics and its evaluation reports.</summary>
public sealed record RunDetails(string Name, string? Config, JsonObject Summary, IReadOnlyList<EvalReportFile> EvalReports,
    IReadOnlyList<string> Outputs);

/// <summary>An eval*.json file of a run: its parsed content, or why it could not be read.</summary>
public sealed record EvalReportFile(string File, JsonNode? Report, string? Error);

/// <summary>Metrics records with step greater than the requested one, and any lines that could not be read.</summary>
public sealed record MetricsPage(IReadOnlyList<JsonObject> Records, IReadOnlyList<string> Errors);

/// <summary>
/// The completions a reinforcement-learning run sampled at one step (completions.jsonl, as TRL's log_completions), with
/// the steps that have any; <paramref name="Step"/> is null when the run logged none.
/// </summary>
public sealed record CompletionsPage(int? Step, IReadOnlyList<int> Steps, IReadOnlyList<JsonObject> Completions, IReadOnlyList<string> Errors);

/// <summary>A run name that is not a plain folder name directly inside the runs folder.</summary>
public sealed class InvalidRunNameException(string message) : Exception(message);

/// <summary>
/// Read-only view of a folder of training runs (each a sub-folder with config.yaml and metrics.jsonl). Files are read
/// while the trainer may still be appending to them, so a last line without its newline is left for the next read.
/// </summary>
public sealed class RunsDirectory
{
    private const string MetricsFile = "metrics.jsonl";
    private const string ConfigFile = "config.yaml";
    private const string CompletionsFile = "completions.jsonl";

    /// <summary>Creates the view; the folder must exist.</summary>
    public RunsDirectory(string root)
    {
        Root = Path.GetFullPath(root);
        if (!Directory.Exists(Root)) throw new DirectoryNotFoundException($"runs folder not found: {Root}");
    }

    /// <summary>The absolute runs folder.</summary>
    public string Root { get; }

    /// <summary>Sub-folders holding metrics.jsonl or config.yaml, most recently updated first.</summary>
    public IReadOnlyList<RunListing> List() =>
        new DirectoryInfo(Root).EnumerateDirectories()
            .Where(d => !d.Name.StartsWith('.'))
            .Select(d => (Dir: d, Metrics: new FileInfo(Path.Combine(d.FullName, MetricsFile)), Config: new FileInfo(Path.Combine(d.FullName, ConfigFile))))
            .Where(r => r.Metrics.Exists || r.Config.Exists)
            .Select(r => new RunListing(r.Dir.Name,
                new[] { r.Metrics, r.Config }.Where(f => f.Exists).Max(f => f.LastWriteTimeUtc), r.Metrics.Exists))
            .OrderByDescending(r => r.UpdatedAt).ThenBy(r => r.Name, StringComparer.Ordinal)
            .ToArray();

    /// <summary>The run's folder, or null when there is no such run.</summary>
    /// <exception cref="InvalidRunNameException">The name is not a single folder name (separators, "..", leading dot, control characters).</exception>
    public string? Resolve(string name)
    {
        if (string.IsNullOrWhiteSpace(name) || name.StartsWith('.') || name.IndexOfAny(['/', '\\', ':']) >= 0
            || name.Any(char.IsControl) || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
            throw new InvalidRunNameException($"'{name}' is not a run name: a run is a folder directly inside the runs folder");
        var dir = Path.GetFullPath(Path.Combine(Root, name));
        // Defence in depth: whatever the checks above missed, the folder must sit directly inside Root.
        if (!string.Equals(Path.GetDirectoryName(dir), Root.TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal))
            throw new InvalidRunNameException($"'{name}' resolves outside the runs folder");
        return Directory.Exists(dir) && (File.Exists(Path.Combine(dir, MetricsFile)) || File.Exists(Path.Combine(dir, ConfigFile))) ? dir : null;
    }

    /// <summary>Config, summary and evaluation reports of a run; null when there is no such run.</summary>
    public RunDetails? Details(string name)
    {
        if (Resolve(name) is not { } dir) return null;
        var configPath = Path.Combine(dir, ConfigFile);
        var config = File.Exists(configPath) ? ReadShared(configPath) : null;
        var metrics = ReadMetrics(dir, afterStep: null);
        var evals = Directory.EnumerateFiles(dir, "eval*.json").Order(StringComparer.Ordinal).Select(ReadEvalReport).ToArray();
        var outputs = new[] { "checkpoints", "best", "final", "tensorboard" }.Where(o => Directory.Exists(Path.Combine(dir, o)))
            .Concat(new[] { "loss.png", "reward.png", CompletionsFile }.Where(o => File.Exists(Path.Combine(dir, o)))).ToArray();
        return new RunDetails(name, config, Summarise(metrics), evals, outputs);
    }

    /// <summary>Metrics records of a run with step greater than <paramref name="afterStep"/> (all when null); null when there is no such run.</summary>
    public MetricsPage? Metrics(string name, int? afterStep) => Resolve(name) is { } dir ? ReadMetrics(dir, afterStep) : null;

    /// <summary>
    /// The completions sampled at <paramref name="step"/> (the last logged step when null); null when there is no such run.
    /// </summary>
    public CompletionsPage? Completions(string name, int? step)
    {
        if (Resolve(name) is not { } dir) return null;
        var (records, errors) = ReadStepRecords(Path.Combine(dir, CompletionsFile), CompletionsFile);
        var steps = records.Select(r => r.Step).Distinct().Order().ToArray();
        var shown = step ?? (steps.Length > 0 ? steps[^1] : null);
        return new CompletionsPage(shown, steps, records.Where(r => r.Step == shown).Select(r => r.Record).ToArray(), errors);
    }

    private static MetricsPage ReadMetrics(string dir, int? afterStep)
    {
        var (records, errors) = ReadStepRecords(Path.Combine(dir, MetricsFile), MetricsFile);
        return new MetricsPage(records.Where(r => afterStep is null || r.Step > afterStep).Select(r => r.Record).ToArray(), errors);
    }

    /// <summary>The complete lines of a JSON-lines file whose records carry an integer "step", and the lines that do not parse.</summary>
    private static (List<(int Step, JsonObject Record)> Records, List<string> Errors) ReadStepRecords(string path, string file)
    {
        var records = new List<(int, JsonObject)>();
        var errors = new List<string>();
        if (!File.Exists(path)) return (records, errors);
        var text = ReadShared(path);
        var complete = text.LastIndexOf('\n') + 1;   // a line still being written has no newline yet
        var lineNumber = 0;
        foreach (var line in text[..complete].Split('\n'))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                var record = JsonNode.Parse(line) as JsonObject ?? throw new JsonException("not a JSON object");
                if (record["step"] is not JsonValue stepValue || !stepValue.TryGetValue<int>(out var step))
                    throw new JsonException("no integer 'step' field");
                records.Add((step, record));
            }
            catch (JsonException e) { errors.Add($"{file}:{lineNumber}: {e.Message}"); }
        }
        return (records, errors);
    }

    private static JsonObject Summarise(MetricsPage metrics)
    {
        var summary = new JsonObject { ["records"] = metrics.Records.Count };
        if (metrics.Records.Count == 0) return summary;
        var last = metrics.Records[^1];
        summary["last_step"] = last["step"]!.DeepClone();
        foreach (var key in new[] { "loss", "lr", "tokens_per_second", "token_accuracy", "reward", "val_reward" })
            if (metrics.Records.LastOrDefault(r => r[key] is JsonValue) is { } withKey) summary[key] = withKey[key]!.DeepClone();
        var validations = metrics.Records.Where(r => r["val_loss"] is JsonValue v && v.TryGetValue<double>(out _)).ToArray();
        if (validations.Length > 0)
        {
            var best = validations.MinBy(r => r["val_loss"]!.GetValue<double>())!;
            summary["best_val_loss"] = best["val_loss"]!.DeepClone();
            summary["best_val_step"] = best["step"]!.DeepClone();
            summary["val_loss"] = validations[^1]["val_loss"]!.DeepClone();
        }
        return summary;
    }

    private static EvalReportFile ReadEvalReport(string path)
    {
        var file = Path.GetFileName(path);
        try { return new EvalReportFile(file, JsonNode.Parse(ReadShared(path)), null); }
        catch (JsonException e) { return new EvalReportFile(file, null, $"{file}: not valid JSON: {e.Message}"); }
    }

    /// <summary>Reads a file the trainer may hold open for writing.</summary>
    private static string ReadShared(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}
