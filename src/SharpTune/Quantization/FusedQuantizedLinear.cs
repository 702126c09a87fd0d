using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// Sibling quantized projections that read the same input (q/k/v, gate/up) as one decode kernel call: the parts' codes
/// are concatenated once into one buffer and each part's own codes tensor is re-pointed (<c>set_</c>) at its rows of it,
/// so the fused product costs no second copy of the weights and the parts keep serving training, merges and saving
/// unchanged. Concatenating rows is exact for both codecs: int8 keeps one scale per output row, and NF4/FP4 blocks of
/// 64 never straddle a row when the input width is a multiple of 64 (the only width the 4-bit kernel serves); the
/// 4-bit block scales are taken as fp32, the form the kernel reads anyway. One call instead of two or three saves each
/// part's rounding of the input and its hand-off to the kernel threads, which dominate the small products of a
/// decode step. Used only where the kernels run (CPU decode steps in inference mode); anything else, or a part that is
/// wrapped, moved or of another codec, leaves the parts to run one by one.
/// </summary>
internal sealed class FusedQuantizedLinear : IDisposable
{
    private QuantizedWeight? fused;
    private Tensor? bias;
    private Part[] parts = [];
    private bool refused;   // the parts cannot share one buffer (mixed codecs, dtypes, widths or biases)

    private readonly record struct Part(QuantizedWeight Weight, IntPtr Codes, long CodesOffset);

    /// <summary>x (…, in) → (…, Σout) through the fused kernel, or null when the parts must run one by one.</summary>
    public Tensor? TryForward(Tensor x, ReadOnlySpan<QuantizedLinear> layers)
    {
        // Only a decode step in inference mode reaches the kernels. Fusing for any other call (a checkpointed layer's
        // no-grad forward while training, a prefill) would move the parts' codes into a new buffer that nothing reads
        // fused, allocated among that call's temporaries, where a long-lived buffer splits the heap's free space.
        if (!Models.InferenceShortcuts.ForCpuKernel(x) || x.numel() / Math.Max(1, x.size(-1)) > Int8MatVec.MaxRows ||
            TryFusedWeight(layers) is not ({ } weight, var fusedBias)) return null;
        var computeDtype = layers[0].ComputeDtype;
        var input = x.dtype == computeDtype ? x : x.to(computeDtype);
        var served = weight switch
        {
            Int8Weight w => Int8MatVec.Supports(input, w),
            FourBitWeight w => FourBitMatVec.Supports(input, w),
            _ => false,
        };
        if (!served) return null;
        using var scope = NewDisposeScope();
        var y = weight.MatmulTransposed(input);
        if (fusedBias is not null) y = y + fusedBias;
        return (y.dtype == x.dtype ? y : y.to(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fused weight and bias of the parts for a decode step in inference mode, fused now if need be; null when the
    /// parts must run one by one. They belong to this object: valid until the parts change.
    /// </summary>
    public (QuantizedWeight Weight, Tensor? Bias)? TryFusedWeight(ReadOnlySpan<QuantizedLinear> layers)
    {
        if (refused || !is_inference_mode_enabled()) return null;
        if (!IsCurrent(layers) && !Fuse(layers)) return null;
        return (fused!, bias);
    }

    private bool IsCurrent(ReadOnlySpan<QuantizedLinear> layers)
    {
        if (fused is null || parts.Length != layers.Length) return false;
        for (var i = 0; i < layers.Length; i++)
        {
            var codes = CodesOf(layers[i].Weight);
            if (!ReferenceEquals(layers[i].Weight, parts[i].Weight) || codes is null || codes.Handle != parts[i].Codes ||
                codes.storage_offset() != parts[i].CodesOffset) return false;
        }
        return true;
    }

    private bool Fuse(ReadOnlySpan<QuantizedLinear> layers)
    {
        Release();
        var weights = new QuantizedWeight[layers.Length];
        for (var i = 0; i < layers.Length; i++) weights[i] = layers[i].Weight;
        var first = layers[0];
        var withBias = first.bias is not null;
        var compatible = true;
        foreach (var layer in layers)
            compatible &= layer.ComputeDtype == first.ComputeDtype && (layer.bias is not null) == withBias &&
                          layer.Weight.InFeatures == first.Weight.InFeatures && layer.Weight.Device.type == TorchSharp.DeviceType.CPU &&
                          CodesOf(layer.Weight) is { } codes && codes.is_contiguous() && layer.Weight switch
                          {
                              Int8Weight => weights[0] is Int8Weight,
                              FourBitWeight f => weights[0] is FourBitWeight g && ReferenceEquals(f.Codec, g.Codec) &&
                                                 f.InFeatures % FourBitCodec.BlockSize == 0,
                              _ => false,
                          };
        if (!compatible)
        {
            refused = true;
            return false;
        }
        using var normal = inference_mode(false);   // the parts' codes become views of this buffer: it must be an ordinary tensor
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var codesParts = weights.Select(w => CodesOf(w)!).ToArray();
        var fusedCodes = cat(codesParts, 0);
        var outFeatures = weights.Sum(w => w.OutFeatures);
        QuantizedWeight made = weights[0] switch
        {
            Int8Weight => new Int8Weight(fusedCodes, cat(weights.Select(w => ((Int8Weight)w).RowAbsmax.to(ScalarType.Float32)).ToArray(), 0)),
            FourBitWeight f => new FourBitWeight(f.Codec, outFeatures, f.InFeatures, fusedCodes,
                cat(weights.Select(w => ((FourBitWeight)w).BlockAbsmaxFloat32()).ToArray(), 0), null),
            _ => throw new InvalidOperationException("unreachable: checked above"),
        };
        var fusedBias = withBias ? cat(layers.ToArray().Select(l => (Tensor)l.bias!).ToArray(), 0) : null;
        var fusedParts = new Part[weights.Length];
        try
        {
            var offset = 0L;
            for (var i = 0; i < weights.Length; i++)
            {
                var length = codesParts[i].shape[0];
                codesParts[i].set_(fusedCodes.narrow(0, offset, length));
                fusedParts[i] = new Part(weights[i], codesParts[i].Handle, codesParts[i].storage_offset());
                offset += length;
            }
        }
        catch (Exception)
        {
            // Codes made under inference mode cannot be re-pointed; those already re-pointed hold the same values.
            made.Dispose();
            refused = true;
            return false;
        }
        fused = made;
        bias = fusedBias?.DetachFromDisposeScope();
        parts = fusedParts;
        return true;
    }

    /// <summary>The tensor holding a weight's codes: int8 codes (out, in) or packed 4-bit pairs (out·in/2).</summary>
    private static Tensor? CodesOf(QuantizedWeight weight) => weight switch
    {
        Int8Weight w => w.Codes,
        FourBitWeight w => w.Packed,
        _ => null,
    };

    private void Release()
    {
        fused?.Dispose();
        bias?.Dispose();
        fused = null;
        bias = null;
        parts = [];
    }

    public void Dispose() => Release();
}
