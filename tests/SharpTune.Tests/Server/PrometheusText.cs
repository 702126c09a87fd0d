using System.Globalization;
using System.Text.RegularExpressions;

namespace SharpTune.Tests.Server;

/// <summary>
/// A strict reader of the Prometheus text exposition format (version 0.0.4): every line is a comment (# HELP / # TYPE)
/// or <c>name{label="value",…} number</c>; anything else fails the test.
/// </summary>
internal static partial class PrometheusText
{
    public static Dictionary<string, double> Parse(string text)
    {
        var samples = new Dictionary<string, double>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0) continue;
            if (line.StartsWith('#'))
            {
                Assert.Matches(@"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$", line);
                continue;
            }
            var match = Sample().Match(line);
            Assert.True(match.Success, $"not a Prometheus sample line: '{line}'");
            var value = match.Groups["value"].Value;
            samples[match.Groups["series"].Value] = value switch
            {
                "+Inf" => double.PositiveInfinity,
                "-Inf" => double.NegativeInfinity,
                "NaN" => double.NaN,
                _ => double.Parse(value, CultureInfo.InvariantCulture),
            };
        }
        return samples;
    }

    public static double Get(Dictionary<string, double> samples, string series) =>
        samples.TryGetValue(series, out var v) ? v : 0;

    [GeneratedRegex(@"^(?<series>[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*=""[^""]*""(,[a-zA-Z_][a-zA-Z0-9_]*=""[^""]*"")*\})?) (?<value>[-+0-9.eE]+|\+Inf|-Inf|NaN)( [0-9]+)?$")]
    private static partial Regex Sample();
}
