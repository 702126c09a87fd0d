using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Models;

/// <summary>transformers' ACT2FN names → functions (the ones these families use).</summary>
public static class Activations
{
    public static Func<Tensor, Tensor> For(string name) => name switch
    {
        "silu" or "swish" => x => F.silu(x),
        "gelu" => x => F.gelu(x),
        "gelu_pytorch_tanh" or "gelu_new" or "gelu_fast" or "gelu_python_tanh" => x => F.gelu(x, approximate: GELU.Approximate.tanh),
        "relu" => x => F.relu(x),
        _ => throw new NotSupportedException(
            $"activation '{name}' is not supported (silu, gelu, gelu_pytorch_tanh, gelu_new, relu are)"),
    };
}
