using SharpTune.Peft.Oft;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Oft;

/// <summary>
/// OFT's rotations and layer output against numbers worked by hand from PEFT's formulas
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, src/peft/tuners/oft/layer.py: OFTRotationModule's
/// _pytorch_skew_symmetric, _cayley_batch, _project_batch, forward and get_weight; OFTLayer.adjust_oft_parameters).
/// </summary>
public class OftFormulaTests
{
    private static void AssertClose(double[,] expected, Tensor actual, double tolerance = 1e-6)
    {
        Assert.Equal([expected.GetLength(0), expected.GetLength(1)], actual.shape);
        for (var i = 0; i < expected.GetLength(0); i++)
            for (var j = 0; j < expected.GetLength(1); j++)
            {
                var value = actual[i, j].to(ScalarType.Float64).item<double>();
                Assert.True(Math.Abs(value - expected[i, j]) <= tolerance, $"[{i},{j}]: expected {expected[i, j]}, found {value}");
            }
    }

    private static Tensor Vec(params double[] values) => tensor(values, dtype: ScalarType.Float64).view(1, -1);

    [Fact]
    public void IndicesFirstBuiltWhileGeneratingStillServeTraining()
    {
        // A block size no other test uses, so its cached indices are first built here, inside inference mode (as when a
        // served or generating model runs first); the same indices must then serve a backward.
        const long blockSize = 11;
        using (inference_mode())
        using (var first = OftRotation.Skew(zeros(1, OftRotation.Elements(blockSize)), blockSize)) { }
        using var vec = randn(2, OftRotation.Elements(blockSize)).requires_grad_();
        using var q = OftRotation.Skew(vec, blockSize);
        using var loss = (q * q).sum();
        loss.backward();
        using var expected = 4 * vec.detach();   // each element is u and −u in Q: d/du (2u²) = 4u
        Assert.True(vec.grad!.allclose(expected));
    }

    [Fact]
    public void StoredElementsAreTheUpperTriangleOfASkewSymmetricBlock()
    {
        // torch.triu_indices(3, 3, 1) is (0,1), (0,2), (1,2): Q = U − Uᵀ.
        using var q = OftRotation.Skew(Vec(1, 2, 3), 3);
        AssertClose(new double[,] { { 0, 1, 2 }, { -1, 0, 3 }, { -2, -3, 0 } }, q[0]);
        using var back = OftRotation.SkewInverse(q, 3);
        AssertClose(new double[,] { { 1, 2, 3 } }, back);
        Assert.Equal(3, OftRotation.Elements(3));
        Assert.Equal(28, OftRotation.Elements(8));
    }

    [Fact]
    public void ExactCayleyOfA2x2BlockIsTheHandWorkedRotation()
    {
        // Q = [[0, a], [−a, 0]], a = 0.5. PEFT's solve(I + Q, I − Q, left=False) = (I − Q)(I + Q)⁻¹
        // = 1/(1 + a²) [[1 − a², −2a], [2a, 1 − a²]] = [[0.6, −0.8], [0.8, 0.6]];
        // (I + Q)(I − Q)⁻¹ is its transpose [[0.6, 0.8], [−0.8, 0.6]].
        using var r = OftRotation.Cayley(Vec(0.5), 2, useNeumann: false, terms: 5);
        AssertClose(new double[,] { { 0.6, -0.8 }, { 0.8, 0.6 } }, r[0], 1e-12);
        using var product = matmul(r[0], r[0].t());
        AssertClose(new double[,] { { 1, 0 }, { 0, 1 } }, product, 1e-12);
    }

    [Fact]
    public void ExactCayleyOfA3x3BlockIsTheHandWorkedRotation()
    {
        // Q = [[0, 1, 2], [−1, 0, 2], [−2, −2, 0]], θ² = 1 + 4 + 4 = 9, Q³ = −θ²Q, so (I + Q)⁻¹ = I + (Q² − Q)/(1 + θ²)
        // and (I − Q)(I + Q)⁻¹ = I + 2(Q² − Q)/(1 + θ²); Q² = [[−5, −4, 2], [−4, −5, −2], [2, −2, −8]], hence
        // R = I + 0.2·[[−5, −5, 0], [−3, −5, −4], [4, 0, −8]] = [[0, −1, 0], [−0.6, 0, −0.8], [0.8, 0, −0.6]].
        using var r = OftRotation.Cayley(Vec(1, 2, 2), 3, useNeumann: false, terms: 5);
        var expected = new double[,] { { 0, -1, 0 }, { -0.6, 0, -0.8 }, { 0.8, 0, -0.6 } };
        AssertClose(expected, r[0], 1e-12);
        // R = (I − Q)(I + Q)⁻¹ entry by entry from the matrices themselves, and RRᵀ = I, det R = 1.
        using var q = OftRotation.Skew(Vec(1, 2, 2), 3)[0];
        using var identity = eye(3, dtype: ScalarType.Float64);
        using var direct = matmul(identity - q, linalg.inv(identity + q));
        AssertClose(expected, direct, 1e-12);
        using var product = matmul(r[0], r[0].t());
        AssertClose(new double[,] { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } }, product, 1e-12);
        Assert.Equal(1.0, linalg.det(r[0]).item<double>(), 12);
    }

    [Theory]
    // 2×2, a = 0.5: Q² = −a²I, Q³ = −a²Q, Q⁴ = a⁴I, Q⁵ = a⁴Q. PEFT's series: 2 terms I + 2Q; 3 and 4 terms I + 2Q + 2Q² + Q³
    // (its loop adds nothing before the last power, which is Q³ for both); 5 terms I + 2Q + 2Q² + 2Q³ + Q⁴;
    // 6 terms I + 2Q + 2Q² + 2Q³ + 2Q⁴ + Q⁵.
    [InlineData(2, 1.0, 2.0)]                     // I + 2Q
    [InlineData(3, 0.5, 1.75)]                    // (1 − 2a²) I + (2 − a²) Q
    [InlineData(4, 0.5, 1.75)]
    [InlineData(5, 0.5625, 1.5)]                  // (1 − 2a² + a⁴) I + (2 − 2a²) Q
    [InlineData(6, 0.625, 1.5625)]                // (1 − 2a² + 2a⁴) I + (2 − 2a² + a⁴) Q
    public void NeumannSeriesOfA2x2BlockIsPeftsTruncatedSum(int terms, double identityCoefficient, double qCoefficient)
    {
        using var r = OftRotation.Cayley(Vec(0.5), 2, useNeumann: true, terms: terms);
        AssertClose(new double[,] { { identityCoefficient, 0.5 * qCoefficient }, { -0.5 * qCoefficient, identityCoefficient } }, r[0], 1e-12);
    }

    [Theory]
    // PEFT ≤ 0.17's series (before huggingface/peft@a18ba67f2), every power's coefficient 2, for the same a = 0.5:
    // 3 terms I + 2Q + 2Q² = (1 − 2a²) I + 2Q; 4 terms + 2Q³ = (1 − 2a²) I + (2 − 2a²) Q;
    // 5 terms + 2Q⁴ = (1 − 2a² + 2a⁴) I + (2 − 2a²) Q; 6 terms + 2Q⁵ = (1 − 2a² + 2a⁴) I + (2 − 2a² + 2a⁴) Q.
    [InlineData(2, 1.0, 2.0)]
    [InlineData(3, 0.5, 2.0)]
    [InlineData(4, 0.5, 1.5)]
    [InlineData(5, 0.625, 1.5)]
    [InlineData(6, 0.625, 1.625)]
    public void LegacyNeumannSeriesOfA2x2BlockIsPeft017sSum(int terms, double identityCoefficient, double qCoefficient)
    {
        using var r = OftRotation.Cayley(Vec(0.5), 2, useNeumann: true, terms: terms, legacySeries: true);
        AssertClose(new double[,] { { identityCoefficient, 0.5 * qCoefficient }, { -0.5 * qCoefficient, identityCoefficient } }, r[0], 1e-12);
    }

    [Theory]
    [InlineData(null, true)]                  // absent: PEFT reads it as "0.0.0"
    [InlineData("0.17.1", true)]
    [InlineData("0.18.0.dev0@a18ba67f2", true)]   // packaging.version: a development release precedes its release
    [InlineData("0.18.0rc1", true)]
    [InlineData("0.18.0", false)]
    [InlineData("0.18.0.post1", false)]
    [InlineData("0.20.1.dev0@5d602fdb", false)]
    [InlineData("1.0", false)]
    public void PeftVersionsBefore018KeepTheLegacySeries(string? version, bool legacy)
    {
        Assert.Equal(legacy, new OftConfig { PeftVersion = version }.LegacyNeumannSeries);
        Assert.False(new OftConfig { PeftVersion = version, UseCayleyNeumann = false }.LegacyNeumannSeries);   // the exact form has no series
    }

    [Fact]
    public void NeumannSeriesOfA3x3BlockApproachesTheCayleyTransformItExpands()
    {
        // Q from (0.1, 0.2, 0.2), θ² = 0.09. Five terms: I + 2Q + 2Q² + 2Q³ + Q⁴ = I + (2 − 2θ²)Q + (2 − θ²)Q²
        // (Q³ = −θ²Q, Q⁴ = −θ²Q²), worked in doubles from Q and Q² below.
        var q = new double[,] { { 0, 0.1, 0.2 }, { -0.1, 0, 0.2 }, { -0.2, -0.2, 0 } };
        var q2 = new double[3, 3];
        for (var i = 0; i < 3; i++)
            for (var j = 0; j < 3; j++)
                for (var k = 0; k < 3; k++) q2[i, j] += q[i, k] * q[k, j];
        const double theta2 = 0.09;
        var expected = new double[3, 3];
        for (var i = 0; i < 3; i++)
            for (var j = 0; j < 3; j++) expected[i, j] = (i == j ? 1 : 0) + (2 - 2 * theta2) * q[i, j] + (2 - theta2) * q2[i, j];
        using var r = OftRotation.Cayley(Vec(0.1, 0.2, 0.2), 3, useNeumann: true, terms: 5);
        AssertClose(expected, r[0], 1e-12);
        // The series expands (I + Q)(I − Q)⁻¹ = I + 2(Q² + Q)/(1 + θ²), the transpose of the exact form: the coefficients
        // differ by 2/(1 + θ²) − (2 − 2θ²) = 0.015 on Q and 2/(1 + θ²) − (2 − θ²) = −0.075 on Q², under 0.01 in every entry.
        using var exact = OftRotation.Cayley(Vec(0.1, 0.2, 0.2), 3, useNeumann: false, terms: 5);
        Assert.True((r[0] - exact[0].t()).abs().max().item<double>() < 1e-2);
        Assert.True((r[0] - exact[0]).abs().max().item<double>() > 0.1);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RotatingIsTheProductWithTheBlockDiagonalMatrix(bool blockShare)
    {
        // Three 4-feature blocks over a (2, 5, 12) input, in doubles: the batched product equals x · blockdiag(R₀, R₁, R₂)
        // and the former broadcast matmul of (…, blocks, 1, b) by (blocks, b, b).
        using var scope = NewDisposeScope();
        var generator = new Generator(7);
        var x = randn([2, 5, 12], dtype: ScalarType.Float64, generator: generator);
        var rotations = OftRotation.Cayley(randn([blockShare ? 1 : 3, 6], dtype: ScalarType.Float64, generator: generator), 4, false, 5);
        var rotated = OftRotation.Rotate(x, rotations);
        var byMatrix = matmul(x, OftRotation.BlockDiagonal(rotations, 3));
        var broadcast = matmul(x.reshape(2, 5, 3, 1, 4), rotations).reshape(2, 5, 12);
        Assert.Equal(x.shape, rotated.shape);
        Assert.True((rotated - byMatrix).abs().max().item<double>() < 1e-12);
        Assert.True((rotated - broadcast).abs().max().item<double>() < 1e-12);
        Assert.True((rotated - x).abs().max().item<double>() > 0.1);   // the rotations do something
    }

    [Fact]
    public void CoftProjectsOnlyTheBlocksOutsideTheBall()
    {
        // Two 2×2 blocks, eps = 0.1: the radius is eps/√2 ≈ 0.0707; ‖Q‖_F = √2|a|. a = 0.01 (norm 0.0141) is kept,
        // a = 1 (norm 1.414) is scaled to the radius: a' = 1 · 0.0707/1.414 = 0.05.
        using var vec = tensor(new double[,] { { 0.01 }, { 1.0 } });
        using var projected = OftRotation.Project(vec, 2, 0.1);
        AssertClose(new double[,] { { 0.01 }, { 0.05 } }, projected, 1e-12);
    }

    [Theory]
    [InlineData(10, 4, 5)]    // divisors 2 and 5 are 2 and 1 away
    [InlineData(12, 5, 4)]    // 4 and 6 tie: the lower
    [InlineData(12, 20, 12)]  // above in_features: in_features
    [InlineData(64, 32, 32)]
    public void AdjustedValuesAreThoseOfPeftsAdjustOftParameters(long inFeatures, long value, long expected) =>
        Assert.Equal(expected, OftRotation.Adjust(inFeatures, value));

    // A Linear (in 6, out 2) with bias whose input is cut into three 2-feature blocks.
    private static Linear Base()
    {
        var linear = nn.Linear(6, 2, hasBias: true);
        using var noGrad = no_grad();
        linear.weight!.copy_(tensor(new float[,] { { 0.5f, -1f, 0.25f, 2f, -0.5f, 1f }, { 1f, 0.5f, -0.75f, 0.1f, 0.3f, -2f } }));
        linear.bias!.copy_(tensor(new float[] { 0.1f, -0.2f }));
        return linear;
    }

    // The 2×2 block of a: exact (I − Q)(I + Q)⁻¹, or PEFT's 5-term series (1 − 2a² + a⁴) I + (2 − 2a²) Q.
    private static double[,] Block(double a, bool neumann) => neumann
        ? new[,] { { 1 - 2 * a * a + Math.Pow(a, 4), a * (2 - 2 * a * a) }, { -a * (2 - 2 * a * a), 1 - 2 * a * a + Math.Pow(a, 4) } }
        : new[,] { { (1 - a * a) / (1 + a * a), -2 * a / (1 + a * a) }, { 2 * a / (1 + a * a), (1 - a * a) / (1 + a * a) } };

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void LayerOutputIsTheBaseOfTheInputTimesTheBlockDiagonalRotation(bool neumann, bool blockShare)
    {
        var config = new OftConfig { OftBlockSize = 2, UseCayleyNeumann = neumann, BlockShare = blockShare };
        using var layer = OftLinear.FromBase(Base(), config);
        double[] a = blockShare ? [0.5] : [0.5, -0.3, 1.2];
        Assert.Equal([a.Length, 1L], layer.oft_R.weight.shape);
        using (no_grad()) layer.oft_R.weight.copy_(tensor(a.Select(v => (float)v).ToArray()).view(-1, 1));
        float[,] x = { { 1f, 2f, -1f, 0.5f, 3f, -2f }, { -0.5f, 0.25f, 2f, 1f, -1f, 0.75f } };
        using var y = layer.forward(tensor(x));

        // In doubles: BD = blockdiag(R₀, R₁, R₂) (block_share: R₀ three times); y = (x · BD) · Wᵀ + b.
        var bd = new double[6, 6];
        for (var blk = 0; blk < 3; blk++)
        {
            var r = Block(a[blockShare ? 0 : blk], neumann);
            for (var i = 0; i < 2; i++)
                for (var j = 0; j < 2; j++) bd[2 * blk + i, 2 * blk + j] = r[i, j];
        }
        var w = layer.base_layer.weight!.to(ScalarType.Float64).data<double>().ToArray();
        var b = layer.base_layer.bias!.to(ScalarType.Float64).data<double>().ToArray();
        var expected = new double[2, 2];
        for (var n = 0; n < 2; n++)
        {
            var rotated = new double[6];
            for (var j = 0; j < 6; j++)
                for (var i = 0; i < 6; i++) rotated[j] += x[n, i] * bd[i, j];
            for (var o = 0; o < 2; o++)
            {
                expected[n, o] = b[o];
                for (var j = 0; j < 6; j++) expected[n, o] += rotated[j] * w[o * 6 + j];
            }
        }
        AssertClose(expected, y, 1e-5);

        // PEFT's get_weight is the same block-diagonal matrix; merging writes W · BDᵀ and gives the same output.
        using var matrix = layer.RotationMatrix();
        AssertClose(bd, matrix, 1e-6);
        using var merged = layer.Fuse() as Linear;
        using var mergedY = merged!.forward(tensor(x));
        AssertClose(expected, mergedY, 1e-5);
    }

    [Fact]
    public void CoftLayerProjectsItsStoredElementsInPlaceBeforeRotating()
    {
        var config = new OftConfig { OftBlockSize = 2, Coft = true, Eps = 0.1 };
        using var layer = OftLinear.FromBase(Base(), config);
        using (no_grad()) layer.oft_R.weight.copy_(tensor(new float[] { 0.01f, 1f, -0.02f }).view(-1, 1));
        using var y = layer.forward(tensor(new float[,] { { 1f, 2f, -1f, 0.5f, 3f, -2f } }));
        // Radius 0.1/√3 = 0.057735; ‖Q‖_F = √2|a|: 0.01 (0.0141) and −0.02 (0.0283) stay, 1 becomes 0.057735/√2 = 0.040825.
        AssertClose(new double[,] { { 0.01 }, { 0.1 / Math.Sqrt(3) / Math.Sqrt(2) }, { -0.02 } }, layer.oft_R.weight, 1e-6);
    }

    [Fact]
    public void AtInitialisationTheRotationIsTheIdentityAndTheLayerIsItsBase()
    {
        foreach (var neumann in new[] { true, false })
        {
            using var layer = OftLinear.FromBase(Base(), new OftConfig { OftBlockSize = 3, UseCayleyNeumann = neumann });
            Assert.Equal([2L, 3L], layer.oft_R.weight.shape);   // two blocks of 3 features, 3 stored elements each
            using var x = randn(4, 6);
            using var expected = layer.base_layer.forward(x);
            using var actual = layer.forward(x);
            Assert.True(actual.equal(expected).all().item<bool>());
        }
    }
}
