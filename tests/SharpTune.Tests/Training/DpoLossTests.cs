using SharpTune.Training;
using SharpTune.Training.Objectives;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>The DPO/IPO formulas on hand-worked numbers (Rafailov et al. 2023 eq. 7; Azar et al. 2023 eq. 17).</summary>
public class DpoLossTests
{
    private static DpoLossResult Loss(double pc, double pr, double rc, double rr, double beta, double smoothing = 0,
        DpoLossType type = DpoLossType.Sigmoid) =>
        DpoLoss.Compute(tensor(new[] { pc }), tensor(new[] { pr }), tensor(new[] { rc }), tensor(new[] { rr }), beta, smoothing, type);

    private static double Value(Tensor t) => t.to(ScalarType.Float64).item<double>();

    [Fact]
    public void PolicyEqualToReferenceGivesLnTwo()
    {
        // x = 0, so −log σ(0) = ln 2 for any β, and robust DPO's smoothing mixes ln 2 with ln 2 over (1 − 2ε).
        Assert.Equal(Math.Log(2), Value(Loss(-5.5, -7.25, -5.5, -7.25, beta: 0.1).Losses), 6);
        Assert.Equal(Math.Log(2), Value(Loss(-5.5, -7.25, -5.5, -7.25, beta: 2, smoothing: 0.3, type: DpoLossType.Robust).Losses), 6);
    }

    [Fact]
    public void SigmoidLossAndRewardsMatchHandWorkedValues()
    {
        // π_c = −1, π_r = −3, ref = −2 for both, β = 0.5: x = (−1+2) − (−3+2) = 2, βx = 1.
        // −log σ(1) = log(1 + e^−1) = 0.31326168751822286; rewards β(π − ref) = +0.5 and −0.5.
        var r = Loss(-1, -3, -2, -2, beta: 0.5);
        Assert.Equal(0.31326168751822286, Value(r.Losses), 6);
        Assert.Equal(0.5, Value(r.ChosenRewards), 6);
        Assert.Equal(-0.5, Value(r.RejectedRewards), 6);
        // A pair the policy gets wrong: x = (−4+3) − (−1+3) = −3, βx = −1.5: log(1 + e^1.5) = 1.7014132779827524.
        Assert.Equal(1.7014132779827524, Value(Loss(-4, -1, -3, -3, beta: 0.5).Losses), 5);
    }

    // Reference values below: TRL's DPOTrainer._compute_loss (trl/trainer/dpo_trainer.py@f2cd57710ae3, loss_type robust
    // and hinge, one pair) ported to PyTorch 1.13.1 in float64; the gradient is autograd's dL/dπ_chosen.
    [Fact]
    public void RobustLossMatchesTrl()
    {
        // ε = 0.1, βx = 1: (0.9·log(1 + e^−1) − 0.1·log(1 + e^1)) / 0.8 = 0.1882616875182229.
        var pc = tensor(new[] { -1.0 }, requires_grad: true);
        var r = DpoLoss.Compute(pc, tensor(new[] { -3.0 }), tensor(new[] { -2.0 }), tensor(new[] { -2.0 }), 0.5, 0.1, DpoLossType.Robust);
        Assert.Equal(0.1882616875182229, Value(r.Losses), 6);
        r.Losses.sum().backward();
        Assert.Equal(-0.19697071068499755, Value(pc.grad!), 6);
        Assert.Equal(1.8889132779827524, Value(Loss(-4, -1, -3, -3, beta: 0.5, smoothing: 0.1, type: DpoLossType.Robust).Losses), 5);
        // ε = 0 is plain DPO.
        Assert.Equal(0.31326168751822286, Value(Loss(-1, -3, -2, -2, beta: 0.5, type: DpoLossType.Robust).Losses), 6);
    }

    [Fact]
    public void HingeLossMatchesTrl()
    {
        // max(0, 1 − βx): x = 2, β = 0.5 → 0; β = 0.1 → 0.8; x = −3, β = 0.5 → 2.5.
        Assert.Equal(0.0, Value(Loss(-1, -3, -2, -2, beta: 0.5, type: DpoLossType.Hinge).Losses), 6);
        Assert.Equal(0.8, Value(Loss(-1, -3, -2, -2, beta: 0.1, type: DpoLossType.Hinge).Losses), 6);
        Assert.Equal(2.5, Value(Loss(-4, -1, -3, -3, beta: 0.5, type: DpoLossType.Hinge).Losses), 6);
        Assert.Equal(DpoLossType.Hinge, DpoLoss.ParseType("hinge"));
        Assert.Equal(DpoLossType.Robust, DpoLoss.ParseType(" Robust"));
    }

    [Fact]
    public void SigmoidLabelSmoothingIsConservativeDpo()
    {
        // ε = 0.1, βx = 1: 0.9·log(1 + e^−1) + 0.1·log(1 + e^1) = 0.9·0.3132616875 + 0.1·1.3132616875 = 0.4132616875
        // (TRL's sigmoid loss before huggingface/trl#3906; robust DPO on the same pair gives 0.18826, above).
        Assert.Equal(0.41326168751822286, Value(Loss(-1, -3, -2, -2, beta: 0.5, smoothing: 0.1).Losses), 6);
        Assert.Equal(0.2, DpoSettings.From(new TrainingOptions { LabelSmoothing = 0.2 }).LabelSmoothing);
    }

    [Fact]
    public void LabelSmoothingWithIpoOrHingeIsRefusedNamingTheOption()
    {
        // Neither ever smoothed: a smoothing asked for would be silently dropped.
        foreach (var type in new[] { DpoLossType.Ipo, DpoLossType.Hinge })
        {
            var e = Assert.Throws<ArgumentException>(() => Loss(-1, -3, -2, -2, beta: 0.5, smoothing: 0.1, type: type));
            Assert.Contains("label_smoothing", e.Message);
            Assert.Contains("robust", e.Message);
        }
        var fromOptions = Assert.Throws<ArgumentException>(() => DpoSettings.From(new TrainingOptions { LabelSmoothing = 0.2, LossType = "ipo" }));
        Assert.Contains("label_smoothing", fromOptions.Message);
        Assert.Equal(0.2, DpoSettings.From(new TrainingOptions { LabelSmoothing = 0.2, LossType = "robust" }).LabelSmoothing);
    }

    [Fact]
    public void IpoIsSquaredDistanceToHalfInverseBeta()
    {
        // x = 2: β = 0.5 → (2 − 1)² = 1; β = 0.1 → (2 − 5)² = 9; x = 0, β = 0.25 → (0 − 2)² = 4.
        Assert.Equal(1.0, Value(Loss(-1, -3, -2, -2, beta: 0.5, type: DpoLossType.Ipo).Losses), 6);
        Assert.Equal(9.0, Value(Loss(-1, -3, -2, -2, beta: 0.1, type: DpoLossType.Ipo).Losses), 5);
        Assert.Equal(4.0, Value(Loss(-2, -2, -2, -2, beta: 0.25, type: DpoLossType.Ipo).Losses), 6);
    }

    [Fact]
    public void GradientPushesChosenUpAndRejectedDown()
    {
        var chosen = tensor(new[] { -2.0 }, requires_grad: true);
        var rejected = tensor(new[] { -2.0 }, requires_grad: true);
        DpoLoss.Compute(chosen, rejected, tensor(new[] { -2.0 }), tensor(new[] { -2.0 }), beta: 0.1).Losses.sum().backward();
        // d/dπ_c of −log σ(β x) at x = 0 is −β σ(0) = −0.05; the rejected side gets +0.05.
        Assert.Equal(-0.05, chosen.grad!.item<double>(), 9);
        Assert.Equal(0.05, rejected.grad!.item<double>(), 9);
    }

    [Fact]
    public void BadSettingsAreRejectedWithTheirNames()
    {
        Assert.Contains("loss_type", Assert.Throws<ArgumentException>(() => DpoLoss.ParseType("exo_pair")).Message);
        Assert.Contains("beta", Assert.Throws<ArgumentOutOfRangeException>(() => Loss(0, 0, 0, 0, beta: 0)).Message);
        Assert.Contains("label_smoothing", Assert.Throws<ArgumentOutOfRangeException>(() => Loss(0, 0, 0, 0, beta: 1, smoothing: 0.5)).Message);
    }
}
