namespace SharpTune.Data.Inspection;

/// <summary>Summary of a length distribution.</summary>
public sealed record LengthStats(int Min, int Median, int P90, int P99, int Max, double Mean)
{
    public static LengthStats Of(IReadOnlyList<int> values)
    {
        if (values.Count == 0) return new LengthStats(0, 0, 0, 0, 0, 0);
        var sorted = values.Order().ToArray();
        // Nearest-rank percentile: the smallest value with at least q of the data at or below it.
        int At(double q) => sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
        return new LengthStats(sorted[0], At(0.5), At(0.9), At(0.99), sorted[^1], sorted.Average());
    }
}
