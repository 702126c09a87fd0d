using System.Globalization;
using SharpTune.Training;

namespace SharpTune.Cli.Commands;

/// <summary>
/// Renders training progress on stderr: a single live line (step/total, loss, lr, tokens/s, ETA) on a terminal,
/// one line per report otherwise; evaluations and messages always get their own line.
/// </summary>
internal sealed class TrainingProgressPrinter : IProgress<TrainingProgress>
{
    private readonly bool live = !Console.IsErrorRedirected;

    public void Report(TrainingProgress p)
    {
        if (p.Message is not null)
        {
            EndLiveLine();
            Console.Error.WriteLine(p.Message);
            return;
        }
        // GRPO and RLOO report their mean reward where other objectives report an accuracy.
        var reward = p.Metrics?.GetValueOrDefault("reward", double.NaN) ?? double.NaN;
        // A regression head reports its mean squared error there.
        var regression = p.Metrics?.ContainsKey("mse") == true;
        var score = !double.IsNaN(reward) ? string.Create(CultureInfo.InvariantCulture, $"reward {reward:F3}")
            : regression ? string.Create(CultureInfo.InvariantCulture, $"mse {p.TokenAccuracy:F4}")
            : string.Create(CultureInfo.InvariantCulture, $"acc {p.TokenAccuracy:P1}");
        var line = string.Create(CultureInfo.InvariantCulture,
            $"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  {score}  lr {p.LearningRate:0.###e+0}  " +
            $"grad {p.GradNorm:F2}  {p.TokensPerSecond:N0} tok/s  ETA {Format(p.Eta)}");
        // DPO's rewards/margins, or a reward model's margin (TRL's RewardTrainer name).
        var margin = p.Metrics?.GetValueOrDefault("rewards/margins", double.NaN) ?? double.NaN;
        if (double.IsNaN(margin)) margin = p.Metrics?.GetValueOrDefault("margin", double.NaN) ?? double.NaN;
        if (!double.IsNaN(margin))
            line += string.Create(CultureInfo.InvariantCulture, $"  margin {margin:F3}");
        if (p.ValidationLoss is { } val)
        {
            EndLiveLine();
            var valMargin = p.Metrics?.GetValueOrDefault("val_rewards/margins", double.NaN) ?? double.NaN;
            if (double.IsNaN(valMargin)) valMargin = p.Metrics?.GetValueOrDefault("val_margin", double.NaN) ?? double.NaN;
            var validation = !double.IsNaN(reward) ? string.Create(CultureInfo.InvariantCulture, $"  val_reward {p.ValidationAccuracy:F3}")
                : regression ? string.Create(CultureInfo.InvariantCulture, $"  val_loss {val:F4}  val_mse {p.ValidationAccuracy:F4}")
                : string.Create(CultureInfo.InvariantCulture, $"  val_loss {val:F4}  val_acc {p.ValidationAccuracy:P1}");
            Console.Error.WriteLine(line + validation +
                (double.IsNaN(valMargin) ? "" : string.Create(CultureInfo.InvariantCulture, $"  val_margin {valMargin:F3}")));
        }
        else if (live)
        {
            Console.Error.Write("\r" + line.PadRight(Math.Max(line.Length, 110)));
            liveLineOpen = true;
        }
        else
        {
            Console.Error.WriteLine(line);
        }
    }

    private bool liveLineOpen;

    public void EndLiveLine()
    {
        if (!liveLineOpen) return;
        Console.Error.WriteLine();
        liveLineOpen = false;
    }

    private static string Format(TimeSpan? t) => t is { } v ? v.ToString(v.TotalHours >= 1 ? @"h\:mm\:ss" : @"m\:ss") : "?";
}
