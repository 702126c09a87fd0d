using SharpTune.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Tests.Training;

/// <summary>
/// The AdamW update for a parameter that has no gradient in some steps, against torch.optim.AdamW's worked by hand
/// (pytorch/pytorch v2.10.0, torch/optim/adam.py _single_tensor_adam with decoupled weight decay): the parameter's
/// own <c>state["step"]</c> counts only the updates it took, and sets its bias correction.
/// </summary>
public class AdamWTests
{
    private const double Lr = 0.1, WeightDecay = 0.01, Beta1 = 0.9, Beta2 = 0.999, Eps = 1e-8;

    /// <summary>torch.optim.AdamW's update of one scalar, in doubles, over the gradients it received (null = none that step).</summary>
    private static double TorchAdamW(double p, IEnumerable<double?> gradients)
    {
        double m = 0, v = 0;
        var step = 0;
        foreach (var g in gradients)
        {
            if (g is not { } grad) continue;   // torch skips a parameter whose grad is None, its step with it
            step++;
            p *= 1 - Lr * WeightDecay;
            m += (grad - m) * (1 - Beta1);
            v = v * Beta2 + (1 - Beta2) * grad * grad;
            var denom = Math.Sqrt(v) / Math.Sqrt(1 - Math.Pow(Beta2, step)) + Eps;
            p -= Lr / (1 - Math.Pow(Beta1, step)) * m / denom;
        }
        return p;
    }

    private static readonly double?[] Always = [0.5, 0.2, -0.3];
    private static readonly double?[] SkipsTheSecond = [0.5, null, -0.3];

    private static void Train(AdamWOptimizer optimizer, Parameter always, Parameter skipping, int from, int to)
    {
        for (var i = from; i < to; i++)
        {
            always.grad = tensor(new[] { (float)Always[i]!.Value });
            skipping.grad = SkipsTheSecond[i] is { } g ? tensor(new[] { (float)g }) : null;
            optimizer.Step(Lr);
            optimizer.ZeroGrad();
        }
    }

    private static AdamWOptimizer Create(string optim, Parameter always, Parameter skipping) =>
        AdamWOptimizer.Create(optim, [("always", always, WeightDecay, 1.0), ("skipping", skipping, WeightDecay, 1.0)]);

    private static void AssertValue(double expected, Parameter p, string what)
    {
        var actual = p.data<float>()[0];
        Assert.True(Math.Abs(actual - expected) <= 1e-6, $"{what}: expected {expected}, found {actual}");
    }

    [Theory]
    [InlineData("adamw_torch")]
    [InlineData("adamw_8bit")]   // a one-element parameter keeps 32-bit moments (bitsandbytes' min_8bit_size)
    public void AParameterWithoutAGradientKeepsItsOwnStepCount(string optim)
    {
        using var always = new Parameter(ones(1));
        using var skipping = new Parameter(ones(1));
        using var optimizer = Create(optim, always, skipping);
        Train(optimizer, always, skipping, 0, 3);
        AssertValue(TorchAdamW(1, Always), always, "updated every step");
        AssertValue(TorchAdamW(1, SkipsTheSecond), skipping, "skipped the second step");
        Assert.Equal(3, optimizer.StepCount);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]   // a checkpoint written before per-parameter counts: every parameter takes the global count
    public void ResumedStateCarriesEachParametersStepCount(bool withStepCounts)
    {
        using var always = new Parameter(ones(1));
        using var skipping = new Parameter(ones(1));
        var saved = new Dictionary<string, Tensor>();
        using (var optimizer = Create("adamw_torch", always, skipping))
        {
            Train(optimizer, always, skipping, 0, 2);
            foreach (var (name, t) in optimizer.StateTensors())
                if (withStepCounts || !name.EndsWith(".step", StringComparison.Ordinal)) saved[name] = t.clone();
            Assert.Equal(withStepCounts ? 6 : 4, saved.Count);
        }
        using var resumed = Create("adamw_torch", always, skipping);
        resumed.LoadState(name => saved.Remove(name, out var t) ? t : null, stepCount: 2);
        Train(resumed, always, skipping, 2, 3);
        AssertValue(TorchAdamW(1, Always), always, "updated every step");
        // Without the counts the skipping parameter resumes at step 2 and takes its second update as the third.
        AssertValue(withStepCounts ? TorchAdamW(1, SkipsTheSecond) : ThirdStepAsStepThree(), skipping, "skipped the second step");
    }

    /// <summary>The old behaviour a checkpoint without counts resumes with: the second update bias-corrected as step 3.</summary>
    private static double ThirdStepAsStepThree()
    {
        double p = 1, m = 0, v = 0;
        foreach (var (grad, step) in new[] { (0.5, 1), (-0.3, 3) })
        {
            p *= 1 - Lr * WeightDecay;
            m += (grad - m) * (1 - Beta1);
            v = v * Beta2 + (1 - Beta2) * grad * grad;
            p -= Lr / (1 - Math.Pow(Beta1, step)) * m / (Math.Sqrt(v) / Math.Sqrt(1 - Math.Pow(Beta2, step)) + Eps);
        }
        return p;
    }
}
