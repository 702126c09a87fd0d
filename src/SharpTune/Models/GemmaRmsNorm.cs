using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Gemma's RMSNorm: x / rms(x) · (1 + w), all in float32 and cast back at the end (Llama's multiplies by w in the
/// activations' dtype instead). The weight starts at zero.
/// </summary>
public sealed class GemmaRmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly double eps;
    public readonly Parameter weight;

    public GemmaRmsNorm(int size, double eps) : base(nameof(GemmaRmsNorm))
    {
        this.eps = eps;
        weight = new Parameter(torch.zeros(size));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * torch.rsqrt(x32.pow(2).mean([-1L], keepdim: true) + eps);
        return (normed * (1.0 + weight.to(ScalarType.Float32))).to(x.dtype).MoveToOuterDisposeScope();
    }
}
