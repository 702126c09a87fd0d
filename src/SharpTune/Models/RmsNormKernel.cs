using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// <see cref="RmsNorm"/> for the few rows of a decode step in one pass on the CPU, where the tensor form is eight
/// libtorch calls on a vector of a few hundred values (two norms a layer, every step). Same arithmetic and roundings
/// as the tensor form: the mean of squares and its inverse root in fp32; Llama's form rounds the normalised values to
/// the activations' dtype and then multiplies by w in that dtype; Gemma's multiplies by (1 + w) in fp32 and rounds once.
/// fp32 or bf16 activations with a weight of the same dtype (Gemma: fp32 or the same); no gradient recorded.
/// </summary>
internal static class RmsNormKernel
{
    /// <summary>Rows above this go through the tensor form (prefill, training, evaluation).</summary>
    private const long MaxRows = Quantization.Int8MatVec.MaxRows;

    public static Tensor? TryNormalize(Tensor x, Tensor weight, double eps, bool unitOffset)
    {
        var dtype = x.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || (weight.dtype != dtype && !(unitOffset && weight.dtype == ScalarType.Float32)) ||
            !InferenceShortcuts.ForCpuKernel(x) || !x.is_contiguous()) return null;
        var shape = x.Sizes();
        var width = shape[^1];
        var rows = x.numel() / Math.Max(1, width);
        if (rows > MaxRows || width == 0 || weight.numel() != width) return null;
        var output = empty(shape, dtype);
        unsafe
        {
            fixed (byte* xs = x.bytes)
            fixed (byte* ws = weight.bytes)
            fixed (byte* ys = output.bytes)
            {
                var n = (int)width;
                for (var r = 0; r < rows; r++)
                {
                    if (dtype == ScalarType.Float32)
                        Row((float*)xs + r * n, (float*)ws, null, (float*)ys + r * n, null, n, (float)eps, unitOffset);
                    else if (weight.dtype == ScalarType.Float32)
                        Row(null, (float*)ws, (ushort*)xs + r * n, null, (ushort*)ys + r * n, n, (float)eps, unitOffset);
                    else
                        BrainRow((ushort*)xs + r * n, (ushort*)ws, (ushort*)ys + r * n, n, (float)eps, unitOffset);
                }
            }
        }
        return output;
    }

    /// <summary>
    /// Llama's form over raw buffers: <paramref name="rows"/> rows of width <paramref name="n"/>, activations and weight
    /// both bf16 (<paramref name="brain"/>) or both fp32.
    /// </summary>
    internal static unsafe void NormalizeRows(nint x, nint weight, nint y, int rows, int n, float eps, bool brain)
    {
        for (var r = 0; r < rows; r++)
            if (brain) BrainRow((ushort*)x + r * n, (ushort*)weight, (ushort*)y + r * n, n, eps, unitOffset: false);
            else Row((float*)x + r * n, (float*)weight, null, (float*)y + r * n, null, n, eps, unitOffset: false);
    }

    /// <summary>fp32 activations (or bf16 ones with Gemma's fp32 weight): one row.</summary>
    private static unsafe void Row(float* x, float* w, ushort* xBits, float* y, ushort* yBits, int n, float eps, bool unitOffset)
    {
        var sum = 0f;
        for (var i = 0; i < n; i++)
        {
            var v = x != null ? x[i] : BFloat16Bits.ToSingle(xBits[i]);
            sum += v * v;
        }
        var inverse = 1f / MathF.Sqrt(sum / n + eps);
        for (var i = 0; i < n; i++)
        {
            var normed = (x != null ? x[i] : BFloat16Bits.ToSingle(xBits[i])) * inverse;
            var value = unitOffset ? normed * (1f + w[i]) : w[i] * normed;
            if (y != null) y[i] = value;
            else yBits[i] = BFloat16Bits.Round(value);
        }
    }

    /// <summary>bf16 activations and weight: normalised values rounded to bf16, then (Llama) times w rounded again.</summary>
    private static unsafe void BrainRow(ushort* x, ushort* w, ushort* y, int n, float eps, bool unitOffset)
    {
        var sum = 0f;
        for (var i = 0; i < n; i++)
        {
            var v = BFloat16Bits.ToSingle(x[i]);
            sum += v * v;
        }
        var inverse = 1f / MathF.Sqrt(sum / n + eps);
        for (var i = 0; i < n; i++)
        {
            var normed = BFloat16Bits.ToSingle(x[i]) * inverse;
            y[i] = unitOffset
                ? BFloat16Bits.Round(normed * (1f + BFloat16Bits.ToSingle(w[i])))
                : BFloat16Bits.Round(BFloat16Bits.ToSingle(BFloat16Bits.Round(normed)) * BFloat16Bits.ToSingle(w[i]));
        }
    }
}
