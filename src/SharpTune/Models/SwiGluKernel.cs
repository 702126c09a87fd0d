using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// silu(gate) · up of a decode step's few rows in one pass on the CPU, from the fused gate/up product (…, 2·ffn):
/// the tensor form is four libtorch calls (two narrows, silu, a product) on a vector of a few hundred values per layer
/// and step, which on a model the size of stories260K costs more than the arithmetic. Same roundings as the tensor form:
/// silu(x) = x / (1 + e⁻ˣ) in fp32 (rounded to bf16 for bf16 activations), then the product rounded once.
/// </summary>
internal static class SwiGluKernel
{
    /// <summary>(…, 2·ffn) with gate first → (…, ffn), or null when the kernel does not apply.</summary>
    public static Tensor? TryApply(Tensor gateUp, long intermediate)
    {
        var dtype = gateUp.dtype;
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16) ||
            !InferenceShortcuts.ForCpuKernel(gateUp) || !gateUp.is_contiguous()) return null;
        var shape = gateUp.Sizes();
        var rows = gateUp.numel() / (2 * intermediate);
        if (shape[^1] != 2 * intermediate || rows > Quantization.Int8MatVec.MaxRows) return null;
        shape[^1] = intermediate;
        var output = empty(shape, dtype);
        unsafe
        {
            fixed (byte* input = gateUp.bytes)
            fixed (byte* result = output.bytes)
                ApplyRows((nint)input, (nint)result, (int)rows, (int)intermediate, dtype == ScalarType.BFloat16);
        }
        return output;
    }

    /// <summary>Raw buffers: <paramref name="rows"/> rows of (gate, up), 2·<paramref name="n"/> values each → n values each.</summary>
    internal static unsafe void ApplyRows(nint gateUp, nint y, int rows, int n, bool brain)
    {
        for (var r = 0; r < rows; r++)
            if (!brain)
            {
                float* gate = (float*)gateUp + r * 2L * n, up = gate + n, ys = (float*)y + r * (long)n;
                if (!Avx512F.IsSupported)
                {
                    for (var i = 0; i < n; i++) ys[i] = Silu(gate[i]) * up[i];
                    continue;
                }
                // 16 at a time, the last few through masked loads and stores: libm's exponential one value at a time had
                // cost more than the rest of a small model's layer step.
                for (var i = 0; i < n; i += 16)
                {
                    var valid = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(n - i)).AsSingle();
                    var g = Avx512F.MaskLoad(gate + i, valid, Vector512<float>.Zero);
                    var u = Avx512F.MaskLoad(up + i, valid, Vector512<float>.Zero);
                    Avx512F.MaskStore(ys + i, valid, Silu(g) * u);
                }
            }
            else
            {
                ushort* gate = (ushort*)gateUp + r * 2L * n, up = gate + n, ys = (ushort*)y + r * (long)n;
                var i = 0;
                // 16 at a time, widened, activated, rounded and multiplied in registers: value by value, the two roundings
                // and widenings had cost several times the exponentials (M: ~12 µs a layer for 2048 values).
                if (Avx512F.IsSupported)
                    for (; i + 16 <= n; i += 16)
                    {
                        var rounded = BFloat16Bits.Rounded16(Silu(BFloat16Bits.Widen16(gate + i)));
                        BFloat16Bits.Round16(rounded * BFloat16Bits.Widen16(up + i), ys + i);
                    }
                for (; i < n; i++)
                {
                    var rounded = BFloat16Bits.ToSingle(BFloat16Bits.Round(Silu(BFloat16Bits.ToSingle(gate[i]))));
                    ys[i] = BFloat16Bits.Round(rounded * BFloat16Bits.ToSingle(up[i]));
                }
            }
    }

    private static float Silu(float x) => x / (1f + MathF.Exp(-x));

    private static Vector512<float> Silu(Vector512<float> x) => x / (Vector512<float>.One + VectorExponential.Exp(-x));
}
