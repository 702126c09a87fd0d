using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Tests.Models;

/// <summary>
/// A decode step's rotation tables (one position per row, the largest known) come from tables computed once for every
/// position; they must be bit for bit what the per-call computation gives the same positions, as the table grows and
/// when LongRoPE switches to its long factors.
/// </summary>
public class RotaryStepTablesTests
{
    [Theory]
    [InlineData(64, "float32")]
    [InlineData(64, "bfloat16")]
    [InlineData(128, "bfloat16")]
    public void DecodeStepTablesEqualThePerCallComputation(int rotaryDim, string dtypeName)
    {
        var dtype = dtypeName == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        using var rope = new RotaryEmbedding(rotaryDim, 500000.0, null, CPU);
        using var reference = new RotaryEmbedding(rotaryDim, 500000.0, null, CPU);
        // Positions of a growing decode, rows at different places (left padding), past the first table's 256 rows.
        foreach (var step in new long[][] { [0], [3, 9], [255, 17, 200], [256, 40], [1000, 999], [4095] })
            AssertSameTables(rope, reference, step, dtype);
    }

    [Fact]
    public void LongRopeTablesSwitchToTheLongFactorsAsThePerCallComputationDoes()
    {
        var scaling = new RopeScaling("longrope", 4.0, 1.0, 4.0, 64)
        {
            ShortFactor = Enumerable.Range(0, 16).Select(i => 1.0 + i / 16.0).ToArray(),
            LongFactor = Enumerable.Range(0, 16).Select(i => 2.0 + i / 8.0).ToArray(),
        };
        using var rope = new RotaryEmbedding(32, 10000.0, scaling, CPU);
        using var reference = new RotaryEmbedding(32, 10000.0, scaling, CPU);
        foreach (var step in new long[][] { [10], [62, 63], [64], [63, 2], [300] })   // the long factors from position 64 on
            AssertSameTables(rope, reference, step, ScalarType.Float32);
    }

    private static void AssertSameTables(RotaryEmbedding rope, RotaryEmbedding reference, long[] positions, ScalarType dtype)
    {
        using var ids = tensor(positions).view(positions.Length, 1);
        var (cos, sin) = rope.RotationTables(ids, dtype, positions.Max());
        // The per-call form: no largest position given, so the step tables do not apply (LongRoPE reads it from the ids).
        var (expectedCos, expectedSin) = reference.RotationTables(ids, dtype);
        using (cos)
        using (sin)
        using (expectedCos)
        using (expectedSin)
        {
            Assert.Equal(expectedCos.shape, cos.shape);
            Assert.Equal(expectedSin.shape, sin.shape);
            Assert.True(cos.eq(expectedCos).all().item<bool>(), $"cos differs at positions {string.Join(", ", positions)}");
            Assert.True(sin.eq(expectedSin).all().item<bool>(), $"sin differs at positions {string.Join(", ", positions)}");
        }
    }
}
