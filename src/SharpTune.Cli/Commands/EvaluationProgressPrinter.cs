using System.Diagnostics;
using System.Globalization;
using SharpTune.Evaluation;

namespace SharpTune.Cli.Commands;

/// <summary>
/// Renders evaluation progress on stderr: each stage's count, rate and ETA on one live line on a terminal; when stderr
/// is redirected (a log), one line per tenth of the stage, so a long benchmark shows it is moving without flooding.
/// </summary>
internal sealed class EvaluationProgressPrinter : IProgress<EvaluationProgress>
{
    private readonly bool live = !Console.IsErrorRedirected;
    private readonly Stopwatch clock = new();
    private string? stage;
    private int lastTenth = -1;
    private bool liveLineOpen;

    public void Report(EvaluationProgress p)
    {
        if (p.Stage != stage || p.Done == 0)
        {
            EndLiveLine();
            stage = p.Stage;
            lastTenth = -1;
            clock.Restart();
        }
        var tenth = p.Total == 0 ? 10 : (int)(10L * p.Done / p.Total);
        var finished = p.Done >= p.Total;
        if (!live && tenth == lastTenth && !finished) return;
        lastTenth = tenth;
        var line = Line(p, clock.Elapsed);
        if (live && !finished)
        {
            Console.Error.Write("\r" + line.PadRight(Math.Max(line.Length, 80)));
            liveLineOpen = true;
        }
        else
        {
            if (liveLineOpen) Console.Error.Write("\r");
            Console.Error.WriteLine(line.PadRight(liveLineOpen ? 80 : 0));
            liveLineOpen = false;
        }
    }

    private void EndLiveLine()
    {
        if (!liveLineOpen) return;
        Console.Error.WriteLine();
        liveLineOpen = false;
    }

    private static string Line(EvaluationProgress p, TimeSpan elapsed)
    {
        var line = string.Create(CultureInfo.InvariantCulture, $"{p.Stage} {p.Done}/{p.Total}");
        if (p.Done == 0 || elapsed.TotalSeconds <= 0) return line;
        var rate = p.Done / elapsed.TotalSeconds;
        var eta = TimeSpan.FromSeconds((p.Total - p.Done) / rate);
        return line + string.Create(CultureInfo.InvariantCulture, $"  {rate:0.#}/s  ETA {eta.ToString(eta.TotalHours >= 1 ? @"h\:mm\:ss" : @"m\:ss")}");
    }
}
