using System.Text.Json.Nodes;
using ScottPlot;

namespace SharpTune.Tracking;

/// <summary>Draws a run's training and validation loss curves (and the learning rate) as PNG files.</summary>
public static class LossPlot
{
    public static void Save(IReadOnlyList<JsonObject> records, string pngPath, string title = "Loss")
    {
        var plot = new Plot();
        AddSeries(plot, records, "loss", "train loss");
        AddSeries(plot, records, "val_loss", "validation loss");
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("loss (nats/token)");
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(pngPath, 900, 500);
    }

    public static void SaveLearningRate(IReadOnlyList<JsonObject> records, string pngPath)
    {
        var plot = new Plot();
        AddSeries(plot, records, "lr", "learning rate");
        plot.Title("Learning rate");
        plot.XLabel("step");
        plot.SavePng(pngPath, 900, 300);
    }

    /// <summary>GRPO's reward curve: the mean reward, each function's mean, and the validation reward.</summary>
    public static void SaveReward(IReadOnlyList<JsonObject> records, string pngPath, string title = "Reward")
    {
        var plot = new Plot();
        AddSeries(plot, records, "reward", "mean reward");
        var functions = records.SelectMany(r => r.Select(kv => kv.Key))
            .Where(k => k.StartsWith("rewards/", StringComparison.Ordinal) && k.EndsWith("/mean", StringComparison.Ordinal))
            .Distinct().Order(StringComparer.Ordinal).ToArray();
        if (functions.Length > 1)
            foreach (var key in functions) AddSeries(plot, records, key, key["rewards/".Length..^"/mean".Length]);
        AddSeries(plot, records, "val_reward", "validation reward");
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("reward");
        plot.ShowLegend(Alignment.LowerRight);
        plot.SavePng(pngPath, 900, 500);
    }

    private static void AddSeries(Plot plot, IReadOnlyList<JsonObject> records, string key, string label)
    {
        var points = records
            .Where(r => r[key] is JsonValue v && v.TryGetValue<double>(out _))
            .Select(r => (x: r["step"]!.GetValue<double>(), y: r[key]!.GetValue<double>()))
            .ToArray();
        if (points.Length == 0) return;
        var scatter = plot.Add.Scatter(points.Select(p => p.x).ToArray(), points.Select(p => p.y).ToArray());
        scatter.LegendText = label;
        scatter.MarkerSize = points.Length < 60 ? 5 : 0;
    }
}
