using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>ORPO, SimPO and KTO losses against values worked by hand (plain arithmetic, in the comments).</summary>
public class PreferenceFamilyLossTests
{
    // Length-averaged answer log-probs of two pairs.
    private static readonly float[] Chosen = [-0.5f, -1.2f];
    private static readonly float[] Rejected = [-0.9f, -0.7f];

    [Fact]
    public void OrpoOddsRatioMatchesTheHandWorkedValue()
    {
        using var scope = NewDisposeScope();
        // log-odds = (c − r) − (ln(1 − e^c) − ln(1 − e^r)): pair 1 0.4 − (ln 0.393469 − ln 0.593430) = 0.810917,
        // pair 2 −0.5 − (ln 0.698806 − ln 0.503415) = −0.827959; log σ of them −0.367729 and −1.190475.
        var result = OrpoLoss.Compute(tensor(Chosen), tensor(Rejected), beta: 0.1);
        Assert.Equal([0.810917, -0.827959], result.LogOdds.data<float>().ToArray().Select(v => Math.Round(v, 6)));
        Assert.Equal([-0.0367729, -0.1190475], result.Losses.data<float>().ToArray().Select(v => Math.Round(v, 7)));
        Assert.Equal([-0.05, -0.12], result.ChosenRewards.data<float>().ToArray().Select(v => Math.Round(v, 6)));
    }

    [Fact]
    public void Log1mExpIsStableOnBothSidesOfMinusLnTwo()
    {
        using var scope = NewDisposeScope();
        var x = tensor(new double[] { -1e-10, -0.5, -0.7, -30 });
        var expected = new[] { Math.Log(1e-10), Math.Log(1 - Math.Exp(-0.5)), Math.Log(1 - Math.Exp(-0.7)), -Math.Exp(-30) };
        var actual = OrpoLoss.Log1mExp(x).data<double>().ToArray();
        for (var i = 0; i < 4; i++) Assert.Equal(expected[i], actual[i], Math.Abs(expected[i]) * 1e-6 + 1e-15);
    }

    [Fact]
    public void SimpoMatchesTheHandWorkedValueWithAndWithoutLabelSmoothing()
    {
        using var scope = NewDisposeScope();
        // h = (c − r) − γ/β = 0.4 − 5 = −4.6 and −0.5 − 5 = −5.5; loss −log σ(β·h) = 0.949367, 1.005492.
        var plain = SimpoLoss.Compute(tensor(Chosen), tensor(Rejected), beta: 0.1, gamma: 0.5);
        Assert.Equal([0.949367, 1.005492], plain.Losses.data<float>().ToArray().Select(v => Math.Round(v, 6)));
        // ε = 0.1: −0.9·log σ(βh) − 0.1·log σ(−βh) = 0.903367, 0.950492.
        var smoothed = SimpoLoss.Compute(tensor(Chosen), tensor(Rejected), beta: 0.1, gamma: 0.5, labelSmoothing: 0.1);
        Assert.Equal([0.903367, 0.950492], smoothed.Losses.data<float>().ToArray().Select(v => Math.Round(v, 6)));
    }

    [Fact]
    public void KtoMatchesTheHandWorkedValue()
    {
        using var scope = NewDisposeScope();
        // One desirable, two undesirable; KL rows: mean(π − ref) = mean(0.2, −0.5, 0.4) = 0.033333 (≥ 0, kept).
        // desirable: 1 − σ(0.1·(0.5 − 0.033333)) = 0.488335; undesirable ×1.33: 1.33·(1 − σ(0.1·(0.033333 − (−0.2)))) = 0.657242,
        // 1.33·(1 − σ(0.1·(0.033333 − (−0.5)))) = 0.647271.
        var result = KtoLoss.Compute(tensor(new[] { -3.0f }), tensor(new[] { -4.0f, -2.5f }), tensor(new[] { -5.0f, -6.0f, -4.0f }),
            tensor(new[] { -3.5f }), tensor(new[] { -3.8f, -2.0f }), tensor(new[] { -5.2f, -5.5f, -4.4f }), beta: 0.1,
            desirableWeight: 1.0, undesirableWeight: 1.33);
        Assert.Equal(0.033333, result.Kl.item<float>(), 5);
        Assert.Equal([0.488335, 0.657242, 0.647271], result.Losses.data<float>().ToArray().Select(v => Math.Round(v, 6)));
        Assert.Equal(0.05f, result.ChosenRewards.item<float>(), 6);
    }

    [Fact]
    public void KtoClampsANegativeKlEstimateToZeroAndApoZeroIgnoresIt()
    {
        using var scope = NewDisposeScope();
        var negative = KtoLoss.Compute(tensor(new[] { -3.0f }), tensor(new[] { -4.0f }), tensor(new[] { -9.0f }),
            tensor(new[] { -3.5f }), tensor(new[] { -3.8f }), tensor(new[] { -5.0f }), beta: 0.1);
        Assert.Equal(0, negative.Kl.item<float>());
        // APO-zero: desirable 1 − σ(βx) = 0.487503, undesirable σ(βx) with x = −0.2 → σ(−0.02) = 0.495000.
        var apo = KtoLoss.Compute(tensor(new[] { -3.0f }), tensor(new[] { -4.0f }), null, tensor(new[] { -3.5f }), tensor(new[] { -3.8f }), null,
            beta: 0.1, type: KtoLossType.ApoZeroUnpaired);
        Assert.Equal([0.487503, 0.495000], apo.Losses.data<float>().ToArray().Select(v => Math.Round(v, 6)));
    }
}
