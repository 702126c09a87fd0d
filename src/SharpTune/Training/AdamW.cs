using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter; PyTorch's torch.optim.AdamW update, decoupled weight decay, bias correction).
/// Written over TorchSharp tensor ops rather than using TorchSharp's optimizer because checkpoints must be
/// safetensors (TorchSharp saves optimizer state only in its own binary format) and because bf16 weights need fp32
/// master copies: a bf16 AdamW state loses small updates (1 + 1e-3 rounds to 1).
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly List<Slot> slots = [];
    private readonly double beta1, beta2, eps;

    public AdamW(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
        : this(parameters.Select(p => (p.Name, p.Parameter, p.WeightDecay, 1.0)), beta1, beta2, eps)
    {
    }

    /// <summary>
    /// An AdamW whose parameters each learn at <see cref="Step"/>'s rate times their <c>LearningRateScale</c>, as torch
    /// parameter groups with their own lr do under a LambdaLR schedule (LoRA+); weight decay uses the scaled rate too.
    /// </summary>
    internal AdamW(IEnumerable<(string Name, Parameter Parameter, double WeightDecay, double LearningRateScale)> parameters,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        (this.beta1, this.beta2, this.eps) = (beta1, beta2, eps);
        using var noGrad = no_grad();
        foreach (var (name, p, decay, lrScale) in parameters)
        {
            var master = p.dtype == ScalarType.Float32 ? null : p.detach().to(ScalarType.Float32).DetachFromDisposeScope();
            slots.Add(new Slot(name, p, decay, lrScale, master,
                zeros(p.shape, ScalarType.Float32, p.device).DetachFromDisposeScope(),
                zeros(p.shape, ScalarType.Float32, p.device).DetachFromDisposeScope()));
        }
    }

    /// <summary>Number of updates applied so far.</summary>
    public long StepCount { get; private set; }

    public IEnumerable<Parameter> Parameters => slots.Select(s => s.Parameter);

    /// <summary>
    /// Applies one update with learning rate <paramref name="lr"/> (times each parameter's scale) to every parameter that
    /// has a gradient.
    /// </summary>
    public void Step(double lr)
    {
        StepCount++;
        var bias1 = 1 - Math.Pow(beta1, StepCount);
        var bias2Sqrt = Math.Pow(1 - Math.Pow(beta2, StepCount), 0.5);
        using var noGrad = no_grad();
        foreach (var s in slots)
        {
            using var scope = NewDisposeScope();
            var grad = s.Parameter.grad;
            if (grad is null) continue;
            var g = grad.dtype == ScalarType.Float32 ? grad : grad.to(ScalarType.Float32);
            var weights = s.Master ?? s.Parameter;
            var groupLr = lr * s.LearningRateScale;
            // torch.optim.AdamW's _single_tensor_adam, operation for operation, so an update rounds as PyTorch's does.
            if (s.WeightDecay != 0) weights.mul_(1 - groupLr * s.WeightDecay);
            s.ExpAvg.lerp_(g, 1 - beta1);
            s.ExpAvgSq.mul_(beta2).addcmul_(g, g, value: 1 - beta2);
            var denom = (s.ExpAvgSq.sqrt() / bias2Sqrt).add_(eps);
            weights.addcdiv_(s.ExpAvg, denom, value: -(groupLr / bias1));
            if (s.Master is not null) s.Parameter.copy_(s.Master);
        }
    }

    public void ZeroGrad()
    {
        foreach (var s in slots)
            s.Parameter.grad = null;
    }

    /// <summary>Optimizer state as named tensors (for a safetensors checkpoint). The tensors are views: save, don't keep.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> StateTensors()
    {
        foreach (var s in slots)
        {
            yield return new($"{s.Name}.exp_avg", s.ExpAvg);
            yield return new($"{s.Name}.exp_avg_sq", s.ExpAvgSq);
            if (s.Master is not null) yield return new($"{s.Name}.master", s.Master);
        }
    }

    /// <summary>Restores state written by <see cref="StateTensors"/>; a missing or mis-shaped entry is an error.</summary>
    public void LoadState(Func<string, Tensor?> read, long stepCount)
    {
        using var noGrad = no_grad();
        foreach (var s in slots)
        {
            Copy(read, $"{s.Name}.exp_avg", s.ExpAvg);
            Copy(read, $"{s.Name}.exp_avg_sq", s.ExpAvgSq);
            if (s.Master is not null)
            {
                Copy(read, $"{s.Name}.master", s.Master);
                s.Parameter.copy_(s.Master);
            }
        }
        StepCount = stepCount;
    }

    private static void Copy(Func<string, Tensor?> read, string name, Tensor target)
    {
        using var value = read(name) ?? throw new InvalidDataException($"optimizer state has no tensor '{name}'");
        if (!value.shape.SequenceEqual(target.shape))
            throw new InvalidDataException($"optimizer state '{name}': expected shape [{string.Join(",", target.shape)}], found [{string.Join(",", value.shape)}]");
        target.copy_(value);
    }

    public void Dispose()
    {
        foreach (var s in slots)
        {
            s.ExpAvg.Dispose();
            s.ExpAvgSq.Dispose();
            s.Master?.Dispose();
        }
    }

    private sealed record Slot(string Name, Parameter Parameter, double WeightDecay, double LearningRateScale, Tensor? Master,
        Tensor ExpAvg, Tensor ExpAvgSq);
}
