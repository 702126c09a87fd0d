using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Root-mean-square layer norm, normalised in fp32 whatever the model's dtype, as Hugging Face does. Llama's form
/// (Llama, Qwen, Phi-3, SmolLM3) multiplies by w in the activations' dtype; Gemma's (<c>unitOffset</c>)
/// multiplies by (1 + w) in fp32 before casting back, and its weight starts at zero.
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly double eps;
    public readonly Parameter weight;

    /// <param name="unitOffset">Gemma's RMSNorm: scale by (1 + w), computed in float32.</param>
    public RmsNorm(int size, double eps, bool unitOffset = false) : base(nameof(RmsNorm))
    {
        this.eps = eps;
        UnitOffset = unitOffset;
        weight = new Parameter(unitOffset ? torch.zeros(size) : torch.ones(size));
        RegisterComponents();
    }

    /// <summary>The ε added to the mean of squares.</summary>
    public double Eps => eps;

    /// <summary>Whether the scale is (1 + w) (Gemma) rather than w: zero is then the identity weight.</summary>
    public bool UnitOffset { get; }

    public override Tensor forward(Tensor x)
    {
        if (RmsNormKernel.TryNormalize(x, weight, eps, UnitOffset) is { } decoded) return decoded;   // a decode step's few rows
        using var scope = NewDisposeScope();
        var x32 = x.dtype == ScalarType.Float32 ? x : x.to(ScalarType.Float32);
        var inverseRms = x32.pow(2).mean([-1L], keepdim: true).add_(eps).rsqrt_();   // in place: fewer tensors per call
        var normed = x32 * inverseRms;
        var result = UnitOffset
            ? Cast(normed * (1.0 + (weight.dtype == ScalarType.Float32 ? weight : weight.to(ScalarType.Float32))), x.dtype)
            : weight * Cast(normed, x.dtype);
        return result.MoveToOuterDisposeScope();
    }

    private static Tensor Cast(Tensor t, ScalarType dtype) => t.dtype == dtype ? t : t.to(dtype);
}
