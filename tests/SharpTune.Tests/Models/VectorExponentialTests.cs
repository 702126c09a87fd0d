using System.Runtime.Intrinsics;
using SharpTune.Models;

namespace SharpTune.Tests.Models;

/// <summary>The kernels' vectorised eˣ against the exact value (double precision), over every range a softmax or SiLU feeds it.</summary>
public class VectorExponentialTests
{
    [Fact]
    public void IsWithinTwoUlpOfTheExactValueEverywhere()
    {
        if (!VectorExponential.IsSupported) return;   // AVX-512 machines only; the kernels that use it check the same
        var inputs = new List<float>();
        for (var x = -110.0; x <= 90.0; x += 0.0137) inputs.Add((float)x);   // ~14,600 values through every binade of the result
        var random = new Random(5);
        for (var i = 0; i < 20_000; i++) inputs.Add((float)(random.NextDouble() * 2 - 1));                  // softmax's busiest range
        inputs.AddRange([0f, -0f, 1f, -1f, 88.72f, 88.73f, -87.33f, -103.27f, -103.28f, float.Epsilon, -float.Epsilon]);
        var worst = 0.0;
        foreach (var chunk in inputs.Chunk(16))
        {
            var lanes = new float[16];
            chunk.CopyTo(lanes, 0);
            var result = VectorExponential.Exp(Vector512.Create(lanes));
            for (var i = 0; i < chunk.Length; i++)
            {
                var exact = Math.Exp(lanes[i]);
                var actual = result[i];
                if (exact > float.MaxValue)
                {
                    Assert.Equal(float.PositiveInfinity, actual);
                    continue;
                }
                // One ulp of the exact value as a float (subnormal results have a fixed ulp).
                var ulp = Math.Max(Math.Abs(MathF.BitIncrement((float)exact) - (float)exact), float.Epsilon);
                var error = Math.Abs(actual - exact) / ulp;
                worst = Math.Max(worst, error);
                Assert.True(error <= 2, $"e^{lanes[i]:R}: {actual:R} against {exact:R} ({error:F2} ulp)");
            }
        }
        Assert.True(worst > 0.25, $"worst error {worst} ulp: the comparison should see the approximation's rounding at all");
    }

    [Fact]
    public void HiddenScoresGiveExactlyZeroAndOverflowGivesInfinity()
    {
        if (!VectorExponential.IsSupported) return;
        var result = VectorExponential.Exp(Vector512.Create(float.NegativeInfinity, -1000f, -104f, 0f, 89f, 1000f, float.PositiveInfinity,
            -0f, 1, 2, 3, 4, 5, 6, 7, 8));
        Assert.Equal(0f, result[0]);
        Assert.Equal(0f, result[1]);
        Assert.Equal(0f, result[2]);
        Assert.Equal(1f, result[3]);
        Assert.Equal(float.PositiveInfinity, result[4]);
        Assert.Equal(float.PositiveInfinity, result[5]);
        Assert.Equal(float.PositiveInfinity, result[6]);
        Assert.Equal(1f, result[7]);
    }
}
