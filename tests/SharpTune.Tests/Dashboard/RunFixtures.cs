using System.Globalization;
using System.Text.Json.Nodes;

namespace SharpTune.Tests.Dashboard;

/// <summary>Writes run folders as the trainer does: config.yaml, metrics.jsonl (one JSON object per line), eval*.json.</summary>
internal static class RunFixtures
{
    public const string Config = "model: models/stories260K\nmethod: lora\nlearning_rate: 2.0e-4\nmax_steps: 6\n";

    /// <summary>Loss 3.0, 2.5, … (step 1…n); lr 1e-4·step; val_loss at steps 2 and 4.</summary>
    public static string WriteRun(string runsDir, string name, int steps = 6)
    {
        var dir = Path.Combine(runsDir, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.yaml"), Config);
        File.WriteAllLines(Path.Combine(dir, "metrics.jsonl"), Enumerable.Range(1, steps).Select(Line));
        return dir;
    }

    public static double LossAt(int step) => 3.5 - 0.5 * step;

    public static string Line(int step)
    {
        var record = new JsonObject
        {
            ["step"] = step,
            ["loss"] = LossAt(step),
            ["lr"] = 1e-4 * step,
            ["grad_norm"] = 1.0,
            ["tokens_per_second"] = 800.0,
            ["token_accuracy"] = 0.5,
        };
        if (step == 2) record["val_loss"] = 2.75;
        if (step == 4) record["val_loss"] = 2.25;
        return record.ToJsonString();
    }

    public static void AppendLine(string runDir, string line) =>
        File.AppendAllText(Path.Combine(runDir, "metrics.jsonl"), line + "\n");

    public static string Invariant(double value) => value.ToString(CultureInfo.InvariantCulture);
}
