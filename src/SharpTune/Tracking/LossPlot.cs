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
