using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Root-mean-square layer norm, normalised in fp32 whatever the model's dtype, as Hugging Face does. Llama's form
/// (Llama, Qwen, Phi-3, SmolLM3) multiplies by w in the activations' dtype; Gemma's (<c>unitOffset</c>)
/// multiplies by (1 + w) in fp32 before casting back, and its weight starts at zero; OLMo 2's
/// (<c>weightInFloat32</c>) multiplies by w in fp32 before casting back.
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly double eps;
    public readonly Parameter weight;

    /// <param name="unitOffset">Gemma's RMSNorm: scale by (1 + w), computed in float32.</param>
    /// <param name="weightInFloat32">
    /// OLMo 2's RMSNorm (Olmo2RMSNorm: (self.weight * hidden_states).to(input_dtype)): scale by w in float32, then cast.
    /// </param>
    public RmsNorm(int size, double eps, bool unitOffset = false, bool weightInFloat32 = false) : base(nameof(RmsNorm))
    {
        this.eps = eps;
        UnitOffset = unitOffset;
        WeightInFloat32 = weightInFloat32;
        weight = new Parameter(unitOffset ? torch.zeros(size) : torch.ones(size));
        RegisterComponents();
    }

    /// <summary>The ε added to the mean of squares.</summary>
    public double Eps => eps;

    /// <summary>Whether the scale is (1 + w) (Gemma) rather than w: zero is then the identity weight.</summary>
    public bool UnitOffset { get; }

    /// <summary>Whether w multiplies in float32 before the cast to the activations' dtype (OLMo 2), not after.</summary>
    public bool WeightInFloat32 { get; }

    public override Tensor forward(Tensor x)
    {
        // A decode step's few rows; the kernel multiplies Llama's way, which is OLMo 2's too in float32.
        if ((!WeightInFloat32 || x.dtype == ScalarType.Float32) && RmsNormKernel.TryNormalize(x, weight, eps, UnitOffset) is { } decoded)
            return decoded;
        using var scope = NewDisposeScope();
        var x32 = x.dtype == ScalarType.Float32 ? x : x.to(ScalarType.Float32);
        var inverseRms = x32.pow(2).mean([-1L], keepdim: true).add_(eps).rsqrt_();   // in place: fewer tensors per call
        var normed = x32 * inverseRms;
        var result = UnitOffset ? Cast(normed * (1.0 + Cast(weight, ScalarType.Float32)), x.dtype)
            : WeightInFloat32 ? Cast(normed * Cast(weight, ScalarType.Float32), x.dtype)
            : weight * Cast(normed, x.dtype);
        return result.MoveToOuterDisposeScope();
    }

    private static Tensor Cast(Tensor t, ScalarType dtype) => t.dtype == dtype ? t : t.to(dtype);
}
