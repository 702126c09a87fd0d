using System.Globalization;
using ScottPlot;

namespace SharpTune.Evaluation;

/// <summary>Renders a confusion matrix as a ScottPlot heatmap: gold labels down the side, predictions across.</summary>
internal static class ConfusionMatrixPlot
{
    public static void Save(ClassificationMetrics metrics, string path, string title)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        int k = metrics.Labels.Count;
        if (k == 0) throw new InvalidOperationException("The confusion matrix has no classes to plot.");
        var counts = metrics.ConfusionMatrix;
        var intensities = new double[k, k];
        int max = 0;
        for (int r = 0; r < k; r++)
            for (int c = 0; c < k; c++) { intensities[r, c] = counts[r, c]; max = Math.Max(max, counts[r, c]); }

        var plot = new Plot();
        var heatmap = plot.Add.Heatmap(intensities);
        heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(heatmap);

        // Heatmap row 0 is drawn at the top; cell (r, c) is centred on x = c, y = k - 1 - r.
        for (int r = 0; r < k; r++)
            for (int c = 0; c < k; c++)
            {
                var text = plot.Add.Text(counts[r, c].ToString(CultureInfo.InvariantCulture), c, k - 1 - r);
                text.LabelAlignment = Alignment.MiddleCenter;
                text.LabelFontSize = 14;
                text.LabelBold = true;
                // Light text on the dark end of Viridis, dark text on the light end.
                text.LabelFontColor = counts[r, c] > max / 2.0 ? Colors.Black : Colors.White;
            }

        double[] positions = Enumerable.Range(0, k).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.SetTicks(positions, metrics.Labels.ToArray());
        plot.Axes.Left.SetTicks(positions, metrics.Labels.Reverse().ToArray());
        plot.XLabel("Predicted label");
        plot.YLabel("Gold label");
        plot.Title(title);
        plot.HideGrid();
        plot.Axes.Margins(0, 0);

        string? directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null) Directory.CreateDirectory(directory);
        int size = Math.Clamp(120 + 60 * k, 400, 1600);
        plot.SavePng(path, size + 120, size);
    }
}
