using ScottPlot;

namespace SharpTune.Data.Inspection;

/// <summary>PNG charts for an inspection report (ScottPlot).</summary>
public static class InspectionPlots
{
    /// <summary>Histogram of token lengths with the context length drawn as a vertical line.</summary>
    public static void TokenHistogram(InspectionReport report, string path, int bins = 40)
    {
        var plot = new Plot();
        var lengths = report.TokenLengths;
        double max = Math.Max(1, Math.Max(lengths.Count == 0 ? 1 : lengths.Max(), report.ContextLength ?? 0));
        double width = Math.Max(1, Math.Ceiling(max / bins));
        var counts = new double[(int)Math.Ceiling(max / width) + 1];
        foreach (var length in lengths) counts[(int)(length / width)]++;
        var positions = Enumerable.Range(0, counts.Length).Select(i => (i + 0.5) * width).ToArray();
        var bars = plot.Add.Bars(positions, counts);
        foreach (var bar in bars.Bars) bar.Size = width * 0.95;
        if (report.ContextLength is { } context)
        {
            var line = plot.Add.VerticalLine(context);
            line.Color = Colors.Red;
            line.LegendText = $"context length {context}";
            plot.ShowLegend();
        }
        plot.Title($"Length distribution ({report.Count} rows)");
        plot.XLabel(report.TokenUnit);
        plot.YLabel("rows");
        plot.Axes.Margins(bottom: 0);
        plot.SavePng(path, 900, 450);
    }

    /// <summary>Bar chart of rows per label.</summary>
    public static void LabelBalance(IReadOnlyDictionary<string, int> labelCounts, string path)
    {
        var plot = new Plot();
        var labels = labelCounts.Keys.ToArray();
        var positions = Enumerable.Range(0, labels.Length).Select(i => (double)i).ToArray();
        plot.Add.Bars(positions, labelCounts.Values.Select(v => (double)v).ToArray());
        plot.Axes.Bottom.SetTicks(positions, labels);
        plot.Title("Label balance");
        plot.YLabel("rows");
        plot.Axes.Margins(bottom: 0);
        plot.SavePng(path, 900, 450);
    }
}
