using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;

namespace SharpTune.Tracking;

/// <summary>
/// A run's metrics: one JSON object per line in metrics.jsonl (step, loss, lr, grad_norm, tokens_per_second,
/// val_loss…) and the same scalars as TensorBoard event files under tensorboard/.
/// </summary>
public sealed class MetricsLog : IDisposable
{
    private readonly string path;
    private readonly TorchSharp.Modules.SummaryWriter? tensorboard;

    public MetricsLog(string runDir, bool tensorboard = true)
    {
        Directory.CreateDirectory(runDir);
        path = Path.Combine(runDir, "metrics.jsonl");
        if (tensorboard)
            this.tensorboard = torch.utils.tensorboard.SummaryWriter(Path.Combine(runDir, "tensorboard"), createRunName: false);
    }

    public string FilePath => path;

    /// <summary>Drops records after <paramref name="step"/> (a resumed run replays those steps).</summary>
    public void TruncateAfter(int step)
    {
        if (!File.Exists(path)) return;
        var kept = ReadAll(path).Where(r => r["step"]!.GetValue<int>() <= step).Select(r => r.ToJsonString()).ToArray();
        File.WriteAllLines(path, kept);
    }

    public void Append(int step, IReadOnlyDictionary<string, double> values)
    {
        var record = new JsonObject { ["step"] = step };
        foreach (var (key, value) in values)
            record[key] = double.IsFinite(value) ? value : null;
        File.AppendAllText(path, record.ToJsonString() + "\n");
        foreach (var (key, value) in values)
            tensorboard?.add_scalar(key, (float)value, step);
    }

    /// <summary>Reads a metrics.jsonl; a malformed line is an error naming the file and line.</summary>
    public static IReadOnlyList<JsonObject> ReadAll(string metricsPath)
    {
        var records = new List<JsonObject>();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(metricsPath))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try { records.Add(JsonNode.Parse(line)!.AsObject()); }
            catch (Exception e) when (e is JsonException or InvalidOperationException)
            {
                throw new InvalidDataException($"{metricsPath}:{lineNumber}: not a JSON object: {e.Message}");
            }
        }
        return records;
    }

    public void Dispose() => (tensorboard as IDisposable)?.Dispose();

    internal static string Format(double v) => v.ToString("G6", CultureInfo.InvariantCulture);
}
