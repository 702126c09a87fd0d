using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// GPT-2's "Conv1D": a linear layer whose weight is stored (in, out), transposed relative to nn.Linear. Kept in
/// that layout so Hugging Face checkpoints load and save unchanged.
/// </summary>
public sealed class Conv1D : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;   // (in, out)
    public readonly Parameter bias;     // (out)

    public Conv1D(int inFeatures, int outFeatures) : base(nameof(Conv1D))
    {
        weight = new Parameter(torch.randn(inFeatures, outFeatures) * 0.02);
        bias = new Parameter(torch.zeros(outFeatures));
        RegisterComponents();
    }

    public long InFeatures => weight.shape[0];
    public long OutFeatures => weight.shape[1];

    public override Tensor forward(Tensor x) => torch.matmul(x, weight) + bias;
}
