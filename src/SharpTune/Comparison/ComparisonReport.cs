using System.Globalization;
using System.Text;
using System.Text.Json;
using ScottPlot;

namespace SharpTune.Comparison;

/// <summary>Writes a comparison as a Markdown table, a JSON file and bar charts (best validation loss, time).</summary>
public static class ComparisonReport
{
    public const string MarkdownFileName = "comparison.md";
    public const string JsonFileName = "comparison.json";

    public static ComparisonResult Write(IReadOnlyList<ComparisonRow> rows, string outputDir, string title)
    {
        Directory.CreateDirectory(outputDir);
        var markdown = Path.Combine(outputDir, MarkdownFileName);
        File.WriteAllText(markdown, Markdown(rows, title));
        var json = Path.Combine(outputDir, JsonFileName);
        File.WriteAllText(json, JsonSerializer.Serialize(rows, new JsonSerializerOptions
        {
            WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
        }));
        var plots = new[]
        {
            Bars(rows, r => r.BestValidationLoss ?? double.NaN, "Best validation loss", "loss", Path.Combine(outputDir, "best_val_loss.png")),
            Bars(rows, r => r.Seconds, "Wall time", "seconds", Path.Combine(outputDir, "time.png")),
        };
        return new ComparisonResult(rows, markdown, json, plots);
    }

    public static string Markdown(IReadOnlyList<ComparisonRow> rows, string title)
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine($"# {title}").AppendLine();
        sb.AppendLine("| method | trainable params | trainable % | peak RSS (MiB) | added RSS (MiB) | time (s) | tokens/s | best val loss | test loss | test ppl | test exact match |");
        sb.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            sb.AppendLine(string.Create(c,
                $"| {r.Method} | {r.TrainableParameters:N0} | {100.0 * r.TrainableParameters / Math.Max(1, r.TotalParameters):F2} | " +
                $"{r.PeakWorkingSetMb:F0} | {r.PeakAboveBaselineMb:F0} | {r.Seconds:F1} | {r.TokensPerSecond:N0} | {Cell(r.BestValidationLoss, "F4")} | " +
                $"{Cell(r.TestLoss, "F4")} | {Cell(r.TestPerplexity, "F2")} | {Cell(r.TestExactMatch, "P1")} |"));
        sb.AppendLine().AppendLine(
            "Peak RSS is the process's working set sampled every 50 ms during the run (managed heap + native tensors + " +
            "runtime); added RSS is that peak minus the working set just before the run. Methods run one after another in " +
            "one process, so the added figure is the fairer comparison. Time is the whole run's wall time; tokens/s counts " +
            "training tokens over the training loop (validation passes and checkpoints included). The first method also pays " +
            "the process's warm-up. Test metrics use the final model.");
        return sb.ToString();
    }

    private static string Cell(double? value, string format) =>
        value is { } v && double.IsFinite(v) ? v.ToString(format, CultureInfo.InvariantCulture) : "–";

    private static string Bars(IReadOnlyList<ComparisonRow> rows, Func<ComparisonRow, double> value, string title, string unit, string path)
    {
        var plot = new Plot();
        var positions = Enumerable.Range(0, rows.Count).Select(i => (double)i).ToArray();
        plot.Add.Bars(positions, rows.Select(r => double.IsFinite(value(r)) ? value(r) : 0).ToArray());
        plot.Axes.Bottom.SetTicks(positions, rows.Select(r => r.Method).ToArray());
        plot.Title(title);
        plot.YLabel(unit);
        plot.Axes.Margins(bottom: 0);
        plot.SavePng(path, 700, 420);
        return path;
    }
}
