namespace SharpTune.Data.Inspection;

/// <summary>How a dataset's size compares with the guideline.</summary>
public enum SizeLevel { TooSmall, Small, Adequate, Good }

/// <summary>The size verdict and the reasoning behind it.</summary>
public sealed record SizeVerdict(SizeLevel Level, string Message);

/// <summary>
/// Rule-of-thumb dataset sizes for fine-tuning. Generation and preference tasks (completion, chat, instruction, text,
/// preference): fewer than 100 examples is too small to move a model reliably, under 1,000 is small (narrow
/// behaviours or style only), a few thousand (≥ 3,000) is the usual target, and larger sets help broad tasks.
/// Classification needs fewer in total but enough per class: the smallest class decides (&lt; 20 too small,
/// &lt; 100 small, ≥ 500 good).
/// </summary>
public static class SizeGuideline
{
    public static SizeVerdict Judge(DatasetFormat format, int count, IReadOnlyDictionary<string, int>? labelCounts)
    {
        if (format == DatasetFormat.Classification && labelCounts is { Count: > 0 })
        {
            var (label, smallest) = labelCounts.MinBy(p => p.Value);
            var level = smallest switch { < 20 => SizeLevel.TooSmall, < 100 => SizeLevel.Small, < 500 => SizeLevel.Adequate, _ => SizeLevel.Good };
            return new SizeVerdict(level, $"smallest class '{label}' has {smallest} examples ({Describe(level)}; guideline: ≥ 100 per class, ≥ 500 good)");
        }
        var generation = count switch { < 100 => SizeLevel.TooSmall, < 1000 => SizeLevel.Small, < 3000 => SizeLevel.Adequate, _ => SizeLevel.Good };
        return new SizeVerdict(generation, $"{count} examples ({Describe(generation)}; guideline for {format.ToString().ToLowerInvariant()}: a few thousand, ≥ 3,000 good, < 100 too small)");
    }

    private static string Describe(SizeLevel level) => level switch
    {
        SizeLevel.TooSmall => "too small to fine-tune reliably",
        SizeLevel.Small => "small: expect narrow gains; consider augmentation",
        SizeLevel.Adequate => "adequate for a narrow task",
        _ => "good",
    };
}
