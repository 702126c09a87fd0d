using System.Diagnostics;
using static TorchSharp.torch;

namespace SharpTune.Bench;

/// <summary>
/// The machine's matmul peak in a dtype, measured the way DESIGN.md §5 did (2048³, warmed up, all threads), so model-FLOP
/// utilisation is stated against what this very machine does today as well as against the design's figure.
/// </summary>
internal static class PeakProbe
{
    public const double DesignBf16 = 850e9;
    public const double DesignFp32 = 195e9;

    public static double Measure(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var a = randn(2048, 2048, dtype: dtype);
        // Each product is disposed at once: kept in the scope, 13 of them would raise the peak RSS the benchmarks report.
        for (var i = 0; i < 3; i++) matmul(a, a).Dispose();
        var clock = Stopwatch.StartNew();
        const int runs = 10;
        for (var i = 0; i < runs; i++) matmul(a, a).Dispose();
        return runs * 2.0 * 2048 * 2048 * 2048 / clock.Elapsed.TotalSeconds;
    }

    public static double Design(ScalarType dtype) => dtype == ScalarType.BFloat16 ? DesignBf16 : DesignFp32;
}
