using SharpTune.Peft.LoHa;
using SharpTune.Peft.LoKr;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Peft.Lycoris;

/// <summary>
/// LoHa's and LoKr's ΔW and layer output against numbers worked by hand from PEFT's formulas
/// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40: tuners/loha/layer.py HadaWeight, tuners/lokr/layer.py
/// factorization, make_kron and LoKrLayer.update_layer).
/// </summary>
public class LycorisFormulaTests
{
    private static Linear Base(int inFeatures, int outFeatures, float[,] weight, float[] bias)
    {
        var linear = nn.Linear(inFeatures, outFeatures, hasBias: true);
        using var noGrad = no_grad();
        linear.weight!.copy_(tensor(weight));
        linear.bias!.copy_(tensor(bias));
        return linear;
    }

    private static void Set(Parameter parameter, float[,] values)
    {
        using var noGrad = no_grad();
        parameter.copy_(tensor(values));
    }

    private static void AssertClose(float[,] expected, Tensor actual)
    {
        Assert.Equal([expected.GetLength(0), expected.GetLength(1)], actual.shape);
        using var e = tensor(expected);
        Assert.True(actual.allclose(e, rtol: 0, atol: 1e-5), $"expected {e.ToString(TorchSharp.TensorStringStyle.Numpy)}, found {actual.ToString(TorchSharp.TensorStringStyle.Numpy)}");
    }

    [Fact]
    public void LohaDeltaIsTheScaledHadamardProductOfTwoLowRankProducts()
    {
        // w1 = w1_a·w1_b = [1; 2]·[1 0 −1] = [[1 0 −1] [2 0 −2]];  w2 = [3; −1]·[2 1 1] = [[6 3 3] [−2 −1 −1]]
        // w1 ⊙ w2 = [[6 0 −3] [−4 0 2]];  scale = alpha / r = 2 / 1  →  ΔW = [[12 0 −6] [−8 0 4]]
        using var layer = LohaLinear.FromBase(Base(3, 2, new float[,] { { 1, 0, 0 }, { 0, 1, 0 } }, [0.5f, -0.5f]), r: 1, alpha: 2);
        Set(layer.hada_w1_a, new float[,] { { 1 }, { 2 } });
        Set(layer.hada_w1_b, new float[,] { { 1, 0, -1 } });
        Set(layer.hada_w2_a, new float[,] { { 3 }, { -1 } });
        Set(layer.hada_w2_b, new float[,] { { 2, 1, 1 } });
        layer.eval();
        using var delta = layer.DeltaWeight();
        AssertClose(new float[,] { { 12, 0, -6 }, { -8, 0, 4 } }, delta);

        // x·(W + ΔW)ᵀ + b with W + ΔW = [[13 0 −6] [−8 1 4]], x = [1 2 3]: [13 − 18 + 0.5, −8 + 2 + 12 − 0.5] = [−4.5, 5.5]
        using var x = tensor(new float[,] { { 1, 2, 3 } });
        using var y = layer.forward(x);
        AssertClose(new float[,] { { -4.5f, 5.5f } }, y);
    }

    [Fact]
    public void LokrDeltaIsTheScaledKroneckerProductOfFullFactors()
    {
        // in = out = 4: factorization(4) = (2, 2), so w1 is (2, 2) and w2 (2, 2); r = 2 is not below max(2, 2) / 2, so
        // both are full matrices. kron([[1 2] [3 4]], [[0 1] [1 0]]) · (alpha 4 / r 2):
        using var layer = LokrLinear.FromBase(Base(4, 4, new float[4, 4], [0, 0, 0, 0]), new LokrConfig(), r: 2, alpha: 4);
        Assert.NotNull(layer.lokr_w1);
        Assert.NotNull(layer.lokr_w2);
        Assert.Null(layer.lokr_w1_a);
        Assert.Null(layer.lokr_w2_a);
        Set(layer.lokr_w1!, new float[,] { { 1, 2 }, { 3, 4 } });
        Set(layer.lokr_w2!, new float[,] { { 0, 1 }, { 1, 0 } });
        layer.eval();
        using var delta = layer.DeltaWeight();
        AssertClose(new float[,] { { 0, 2, 0, 4 }, { 2, 0, 4, 0 }, { 0, 6, 0, 8 }, { 6, 0, 8, 0 } }, delta);

        // A zero base weight: the output is x·ΔWᵀ, x = [1 0 0 1] → rows of ΔW summed at columns 0 and 3: [4, 2, 8, 6].
        using var x = tensor(new float[,] { { 1, 0, 0, 1 } });
        using var y = layer.forward(x);
        AssertClose(new float[,] { { 4, 2, 8, 6 } }, y);
    }

    [Fact]
    public void LokrWithLowRankFactorsBuildsEachFactorFromItsPair()
    {
        // in = out = 16: factorization(16) = (4, 4). r = 1 < 4 / 2, so with decompose_both both factors are rank-1 pairs.
        // ΔW[i·4 + j, k·4 + l] = scale · w1[i, k] · w2[j, l], w1 = w1_a·w1_b, w2 = w2_a·w2_b, checked entry by entry.
        using var layer = LokrLinear.FromBase(Base(16, 16, new float[16, 16], new float[16]), new LokrConfig { DecomposeBoth = true }, r: 1, alpha: 3);
        Assert.Null(layer.lokr_w1);
        Assert.Null(layer.lokr_w2);
        float[] w1a = [1, -2, 0.5f, 3], w1b = [2, 1, -1, 0], w2a = [0, 1, 2, -1], w2b = [1, 1, -3, 2];
        Set(layer.lokr_w1_a!, Column(w1a));
        Set(layer.lokr_w1_b!, Row(w1b));
        Set(layer.lokr_w2_a!, Column(w2a));
        Set(layer.lokr_w2_b!, Row(w2b));
        layer.eval();
        var expected = new float[16, 16];
        for (var i = 0; i < 4; i++)
            for (var j = 0; j < 4; j++)
                for (var k = 0; k < 4; k++)
                    for (var l = 0; l < 4; l++)
                        expected[i * 4 + j, k * 4 + l] = 3f * (w1a[i] * w1b[k]) * (w2a[j] * w2b[l]);
        using var delta = layer.DeltaWeight();
        AssertClose(expected, delta);
    }

    private static float[,] Column(float[] values)
    {
        var m = new float[values.Length, 1];
        for (var i = 0; i < values.Length; i++) m[i, 0] = values[i];
        return m;
    }

    private static float[,] Row(float[] values)
    {
        var m = new float[1, values.Length];
        for (var i = 0; i < values.Length; i++) m[0, i] = values[i];
        return m;
    }

    [Theory]
    // Worked by hand from PEFT's loop (and confirmed by running PEFT's factorization() from that commit, plain Python):
    // the sum test compares with 1 + dimension (set once), so only m < n and the factor limit stop it. 768 = 2⁸·3: m walks 2, 3, 4, 6, 8, 12, 16, 24, then 32 (n = 24 < m ends it), ordered (24, 32).
    [InlineData(768, -1, 24, 32)]
    [InlineData(4096, -1, 64, 64)]   // … 32 (n 128), 64 (n 64): m < n fails
    [InlineData(127, -1, 1, 127)]    // prime: the next divisor is 127 itself (n = 1), then ordered
    [InlineData(256, 8, 8, 32)]      // 8 divides 256: (factor, dimension / factor) at once
    [InlineData(256, -1, 16, 16)]    // PEFT's docstring examples
    [InlineData(128, -1, 8, 16)]
    [InlineData(128, 4, 4, 32)]
    [InlineData(100, 3, 2, 50)]      // 3 does not divide 100: divisors up to 3 only, so m = 2
    [InlineData(16, 8, 8, 2)]        // a dividing factor is returned unordered, as PEFT does
    [InlineData(64, -1, 8, 8)]
    [InlineData(32, -1, 4, 8)]       // m walks 2, 4, 8 (n = 4 < m), ordered (4, 8)
    public void FactorizationMatchesPeft(int dimension, int factor, int m, int n) =>
        Assert.Equal((m, n), ((int, int))LokrShapes.Factorization(dimension, factor) switch { var (a, b) => ((int)a, (int)b) });

    [Theory]
    // (in, out, r, decompose_both) → use_w1 = not (decompose_both and r < max(a, c) / 2), use_w2 = not (r < max(b, d) / 2)
    [InlineData(64, 64, 8, false, 8, 8, 8, 8, true, true)]    // 8 < 8 / 2 is false: full w2
    [InlineData(64, 64, 3, false, 8, 8, 8, 8, true, false)]   // 3 < 4: w2 is a rank-3 pair; w1 stays full without decompose_both
    [InlineData(64, 64, 3, true, 8, 8, 8, 8, false, false)]
    [InlineData(64, 32, 4, true, 4, 8, 8, 8, true, true)]     // out 32 → (a, b) = (4, 8); 4 < max(4, 8) / 2 = 4 is false
    [InlineData(768, 768, 15, true, 24, 32, 24, 32, true, false)]   // 15 < 12 false: full w1; 15 < 16 true: w2 pair
    public void LokrShapesFollowPeftsUpdateLayer(int inFeatures, int outFeatures, int r, bool decomposeBoth, long a, long b, long c, long d,
        bool useW1, bool useW2)
    {
        var shapes = LokrShapes.For(inFeatures, outFeatures, r, decomposeBoth, -1);
        Assert.Equal(new LokrShapes(a, b, c, d, useW1, useW2), shapes);
    }

    [Fact]
    public void AtInitialisationBothUpdatesAreZeroAndLycorisInitZeroesTheRightFactor()
    {
        torch.manual_seed(3);
        using var loha = LohaLinear.FromBase(nn.Linear(12, 6), r: 2, alpha: 4);
        Assert.True(loha.hada_w2_b.eq(0).all().item<bool>());
        Assert.False(loha.hada_w1_a.eq(0).all().item<bool>());
        Assert.True(loha.DeltaWeight().eq(0).all().item<bool>());

        using var lokr = LokrLinear.FromBase(nn.Linear(12, 6), new LokrConfig(), r: 8, alpha: 8);
        Assert.True(lokr.lokr_w1!.eq(0).all().item<bool>());   // PEFT's init_weights=True zeroes the left factor
        Assert.False(lokr.lokr_w2!.eq(0).all().item<bool>());
        Assert.True(lokr.DeltaWeight().eq(0).all().item<bool>());

        using var lycoris = LokrLinear.FromBase(nn.Linear(12, 6), new LokrConfig { InitWeights = LokrInit.Lycoris }, r: 8, alpha: 8);
        Assert.False(lycoris.lokr_w1!.eq(0).all().item<bool>());
        Assert.True(lycoris.lokr_w2!.eq(0).all().item<bool>());
    }

    [Theory]
    [InlineData(LokrInit.Default)]
    [InlineData(LokrInit.Lycoris)]
    [InlineData(LokrInit.Random)]
    public void LowRankLokrFactorsStartAsEachInitModeOfPeftSays(LokrInit init)
    {
        // PEFT's reset_adapter_parameters (true): lokr_w1_a zero, lokr_w1_b, lokr_w2_a, lokr_w2_b kaiming;
        // reset_adapter_parameters_lycoris_way: lokr_w2_b zero, the others kaiming; _random: none zero
        // (huggingface/peft@5d602fdb, tuners/lokr/layer.py:111-158).
        torch.manual_seed(6);
        using var layer = LokrLinear.FromBase(nn.Linear(16, 32), new LokrConfig { DecomposeBoth = true, InitWeights = init }, r: 1, alpha: 1);
        Assert.Equal(new LokrShapes(4, 8, 4, 4, UseW1: false, UseW2: false), layer.Shapes);   // r = 1 splits both sides
        Assert.Null(layer.lokr_w1);
        Assert.Null(layer.lokr_w2);
        bool Zero(Parameter? p) => p!.eq(0).all().item<bool>();
        Assert.Equal(init == LokrInit.Default, Zero(layer.lokr_w1_a));
        Assert.False(Zero(layer.lokr_w1_b));
        Assert.False(Zero(layer.lokr_w2_a));
        Assert.Equal(init == LokrInit.Lycoris, Zero(layer.lokr_w2_b));
        using var delta = layer.DeltaWeight();
        Assert.Equal(init != LokrInit.Random, delta.eq(0).all().item<bool>());
    }

    [Theory]
    [InlineData(false, true)]    // LoHa always divides the kept rows by the fraction kept (PEFT: drop /= drop.mean())
    [InlineData(true, false)]    // LoKr only with rank_dropout_scale
    [InlineData(true, true)]
    public void RankDropoutZeroesWholeOutputRowsOnlyInTraining(bool lokr, bool rescaled)
    {
        torch.manual_seed(5);
        using var layer = lokr
            ? (SharpTune.Peft.Lycoris.LycorisLinear)LokrLinear.FromBase(nn.Linear(8, 32), new LokrConfig
                { RankDropout = 0.5, RankDropoutScale = rescaled, InitWeights = LokrInit.Random }, r: 2, alpha: 2)
            : LohaLinear.FromBase(nn.Linear(8, 32), r: 2, alpha: 2, rankDropout: 0.5, initWeights: false);
        using var full = layer.DeltaWeight(training: false);
        using var dropped = layer.DeltaWeight(training: true);
        var keptRows = Enumerable.Range(0, 32).Where(row => !dropped[row].eq(0).all().item<bool>()).ToList();
        Assert.InRange(keptRows.Count, 4, 28);   // p = 0.5 over 32 rows
        var factor = rescaled ? 32.0 / keptRows.Count : 1.0;
        for (var row = 0; row < 32; row++)
        {
            using var expected = keptRows.Contains(row) ? full[row] * factor : zeros_like(full[row]);
            Assert.True(dropped[row].allclose(expected, rtol: 1e-5, atol: 1e-6), $"row {row}");
        }
        // In evaluation the same layer applies the whole update.
        layer.eval();
        using var x = torch.randn(3, 8);
        using var expectedOutput = layer.base_layer.forward(x) + x.matmul(full.t());
        using var actual = layer.forward(x);
        Assert.True(actual.allclose(expectedOutput, rtol: 1e-5, atol: 1e-5));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RankDropoutDrawsItsMaskFromTheCpuGeneratorWhateverTheWeightsDevice(bool lokr)
    {
        // ActivationCheckpoint replays only the CPU generator, so a mask drawn on the weight's device (a GPU) would differ
        // when a layer is recomputed; PEFT draws on the CPU and moves the mask (huggingface/peft@5d602fdb,
        // tuners/loha/layer.py:212-213, tuners/lokr/layer.py:282-283). The "meta" device stands in for a GPU: a draw
        // there leaves the CPU generator where it was.
        nn.Module<Tensor, Tensor> baseLayer;
        set_default_device(device("meta"));
        try { baseLayer = nn.Linear(8, 32); }
        finally { set_default_device(CPU); }
        using var layer = lokr
            ? (SharpTune.Peft.Lycoris.LycorisLinear)LokrLinear.FromBase(baseLayer, new LokrConfig { RankDropout = 0.5, InitWeights = LokrInit.Random }, r: 2, alpha: 2)
            : LohaLinear.FromBase(baseLayer, r: 2, alpha: 2, rankDropout: 0.5, initWeights: false);
        torch.manual_seed(11);
        using var expectedState = get_rng_state();
        using (torch.rand(32)) { }   // the draw PEFT makes: one number per output row, on the CPU
        using var afterOneDraw = get_rng_state();
        torch.manual_seed(11);
        using var dropped = layer.DeltaWeight(training: true);
        using var actualState = get_rng_state();
        Assert.Equal(DeviceType.META, dropped.device_type);
        Assert.True(actualState.equal(afterOneDraw).all().item<bool>(), "the mask was not drawn from the CPU generator");
        Assert.False(expectedState.equal(afterOneDraw).all().item<bool>());
    }

    [Fact]
    public void ModuleDropoutOfNearlyOneSkipsTheUpdateInTrainingOnly()
    {
        torch.manual_seed(9);
        using var layer = LohaLinear.FromBase(nn.Linear(8, 4), r: 2, alpha: 2, moduleDropout: 0.999999, initWeights: false);
        using var x = torch.randn(2, 8);
        using var baseOutput = layer.base_layer.forward(x);
        layer.train();
        using (var trained = layer.forward(x)) Assert.True(trained.equal(baseOutput).all().item<bool>(), $"differs by {(trained - baseOutput).abs().max().item<float>()}");
        layer.eval();
        using var evaluated = layer.forward(x);
        Assert.False(evaluated.allclose(baseOutput));
    }
}
