using SharpTune.Models;
using SharpTune.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft;

/// <summary>
/// What wrapping methods (LoRA, DoRA, IA3, bottleneck adapters) need from the layer they wrap, whatever it is: an
/// nn.Linear, GPT-2's Conv1D (weight stored (in, out)) or a frozen <see cref="QuantizedLinear"/> (weight stored
/// quantized, read by dequantizing it, and merged by dequantizing into a plain Linear — never re-quantized).
/// </summary>
public static class BaseLayer
{
    /// <summary>Whether a method can wrap <paramref name="layer"/>.</summary>
    public static bool IsSupported(nn.Module layer) => layer is Linear or Conv1D or QuantizedLinear;

    /// <summary>
    /// Throws a clear error naming <paramref name="method"/> (and the module's <paramref name="path"/> when given) unless
    /// the layer can be wrapped.
    /// </summary>
    public static void Require(nn.Module layer, string method, string? path = null)
    {
        if (!IsSupported(layer))
            throw new ArgumentException(
                $"{method} wraps Linear, Conv1D or quantized linear layers, not {layer.GetType().Name}" + (path is null ? "" : $" (target module '{path}')"));
    }

    /// <summary>(in, out) features.</summary>
    public static (long In, long Out) Shape(nn.Module layer) => layer switch
    {
        Linear linear => (linear.in_features, linear.out_features),
        Conv1D conv => (conv.InFeatures, conv.OutFeatures),
        QuantizedLinear quantized => (quantized.InFeatures, quantized.OutFeatures),
        _ => throw Unsupported(layer),
    };

    /// <summary>The device of the layer's weight.</summary>
    public static Device DeviceOf(nn.Module layer) => layer switch
    {
        Linear linear => linear.weight!.device,
        Conv1D conv => conv.weight.device,
        QuantizedLinear quantized => quantized.Weight.Device,
        _ => throw Unsupported(layer),
    };

    /// <summary>
    /// The dtype PEFT's <c>_move_adapter_to_device_of_base_layer</c> casts a new adapter's tensors to
    /// (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40, tuners/tuners_utils.py, _get_base_layer_device_and_dtype):
    /// the weight's dtype, a 4-bit layer's compute dtype (bitsandbytes' Linear4bit.compute_dtype), and null for an int8
    /// layer (Linear8bitLt's int8 weight, which PEFT does not cast to).
    /// </summary>
    public static ScalarType? AdapterDtype(nn.Module layer) => layer switch
    {
        Linear linear => linear.weight!.dtype,
        Conv1D conv => conv.weight.dtype,
        QuantizedLinear quantized => quantized.Options.IsFourBit ? quantized.ComputeDtype : null,
        _ => throw Unsupported(layer),
    };

    /// <summary>True when the layer stores its weight (in, out) (GPT-2's Conv1D; PEFT's fan_in_fan_out).</summary>
    public static bool FanInFanOut(nn.Module layer) => layer is Conv1D;

    /// <summary>The weight as (out, in) in <paramref name="dtype"/>; a quantized one is dequantized (a new tensor).</summary>
    public static Tensor Weight(nn.Module layer, ScalarType dtype) => layer switch
    {
        Linear linear => linear.weight!.to(dtype),
        Conv1D conv => conv.weight.t().to(dtype),
        QuantizedLinear quantized => quantized.DequantizedWeight(dtype),
        _ => throw Unsupported(layer),
    };

    /// <summary>The bias (out), or null.</summary>
    public static Tensor? Bias(nn.Module layer) => layer switch
    {
        Linear linear => linear.bias,
        Conv1D conv => conv.bias,
        QuantizedLinear quantized => quantized.bias,
        _ => throw Unsupported(layer),
    };

    /// <summary>
    /// The layer with its weight replaced by <paramref name="weight"/> (out, in) and, when given, its bias by
    /// <paramref name="bias"/>: Linear and Conv1D are written in place (in their own dtype); a quantized layer becomes
    /// a plain Linear in its compute dtype, since re-quantizing merged weights loses what the merge added.
    /// </summary>
    public static nn.Module<Tensor, Tensor> WithWeight(nn.Module<Tensor, Tensor> layer, Tensor weight, Tensor? bias = null)
    {
        using var noGrad = no_grad();
        switch (layer)
        {
            case Linear linear:
                linear.weight!.copy_(weight);
                if (bias is not null) linear.bias!.copy_(bias);
                return linear;
            case Conv1D conv:
                conv.weight.copy_(weight.t());
                if (bias is not null) conv.bias.copy_(bias);
                return conv;
            case QuantizedLinear quantized:
                var merged = quantized.ToLinear(weight, quantized.ComputeDtype);
                if (bias is not null) merged.bias!.copy_(bias);
                return merged;
            default:
                throw Unsupported(layer);
        }
    }

    private static Exception Unsupported(nn.Module layer) =>
        new InvalidOperationException($"unsupported base layer {layer.GetType().Name}");
}
