using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter; PyTorch's torch.optim.AdamW update, decoupled weight decay, bias correction) with fp32
/// moments, 8 bytes per parameter. Written over TorchSharp tensor ops rather than using TorchSharp's optimizer because
/// checkpoints must be safetensors (TorchSharp saves optimizer state only in its own binary format) and because bf16
/// weights need fp32 master copies (<see cref="AdamWOptimizer"/>).
/// </summary>
public sealed class AdamW : AdamWOptimizer
{
    public AdamW(IEnumerable<(string Name, Parameter Parameter, double WeightDecay)> parameters,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
        : this(Unscaled(parameters), beta1, beta2, eps)
    {
    }

    /// <summary>An AdamW whose parameters each learn at the step's rate times their <c>LearningRateScale</c> (LoRA+).</summary>
    internal AdamW(IEnumerable<(string Name, Parameter Parameter, double WeightDecay, double LearningRateScale)> parameters,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
        : base(parameters, beta1, beta2, eps, p => new TorchMoments(p))
    {
    }

    private sealed class TorchMoments(Parameter p) : Moments
    {
        private readonly Tensor expAvg = zeros(p.shape, ScalarType.Float32, p.device).DetachFromDisposeScope();
        private readonly Tensor expAvgSq = zeros(p.shape, ScalarType.Float32, p.device).DetachFromDisposeScope();

        public override void Update(Tensor weights, Tensor grad, double weightDecay, AdamHyperparameters h)
        {
            var g = Fp32(grad);
            var bias1 = 1 - Math.Pow(h.Beta1, h.Step);
            var bias2Sqrt = Math.Pow(1 - Math.Pow(h.Beta2, h.Step), 0.5);
            // torch.optim.AdamW's _single_tensor_adam, operation for operation, so an update rounds as PyTorch's does.
            if (weightDecay != 0) weights.mul_(1 - h.Lr * weightDecay);
            expAvg.lerp_(g, 1 - h.Beta1);
            expAvgSq.mul_(h.Beta2).addcmul_(g, g, value: 1 - h.Beta2);
            var denom = (expAvgSq.sqrt() / bias2Sqrt).add_(h.Eps);
            weights.addcdiv_(expAvg, denom, value: -(h.Lr / bias1));
        }

        public override IEnumerable<(string Suffix, Tensor Tensor)> Tensors() => [("exp_avg", expAvg), ("exp_avg_sq", expAvgSq)];
    }
}
