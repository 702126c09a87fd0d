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

    /// <summary>
    /// A GRPO run as GrpoTrainer writes it: metrics with reward (0.25·step) and val_reward at step 2, and completions.jsonl
    /// with two samples per step: prompt "p{step}", completions "c{step}a" (reward 1, advantage 0.7071) and "c{step}b".
    /// </summary>
    public static string WriteGrpoRun(string runsDir, string name, int steps)
    {
        var dir = Path.Combine(runsDir, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.yaml"), "model: quickstart/base\nobjective: grpo\n");
        File.WriteAllLines(Path.Combine(dir, "metrics.jsonl"), Enumerable.Range(1, steps).Select(step =>
        {
            var record = new JsonObject { ["step"] = step, ["loss"] = 0.01 * step, ["lr"] = 1e-5, ["reward"] = 0.25 * step };
            if (step == 2) record["val_reward"] = 0.4;
            return record.ToJsonString();
        }));
        File.WriteAllLines(Path.Combine(dir, "completions.jsonl"), Enumerable.Range(1, steps).SelectMany(step => new[]
        {
            Completion(step, "a", 1.0, 0.7071, truncated: false), Completion(step, "b", 0.0, -0.7071, truncated: step == steps),
        }));
        return dir;
    }

    private static string Completion(int step, string which, double reward, double advantage, bool truncated) => new JsonObject
    {
        ["step"] = step, ["prompt"] = $"p{step}", ["completion"] = $"c{step}{which}",
        ["rewards"] = new JsonObject { ["exact"] = reward }, ["reward"] = reward, ["advantage"] = advantage, ["truncated"] = truncated,
    }.ToJsonString();

    public static void AppendLine(string runDir, string line) =>
        File.AppendAllText(Path.Combine(runDir, "metrics.jsonl"), line + "\n");

    public static string Invariant(double value) => value.ToString(CultureInfo.InvariantCulture);
}
