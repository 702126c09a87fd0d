using System.Globalization;

namespace SharpTune.Data;

/// <summary>
/// Reads a number written as text, as CSV and TSV cells always are (the readers keep every cell a string) and as
/// regression labels are stored: invariant culture, so "0.5" means the same on every machine, and finite only, since a
/// NaN or infinite target poisons a loss without an error.
/// </summary>
internal static class NumericText
{
    /// <summary>True when <paramref name="text"/> is a finite number in invariant-culture notation (e.g. "3", "-0.25", "1e-3").</summary>
    public static bool TryParseFinite(string? text, out double value) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value) && double.IsFinite(value);
}
