using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// Rotary position embedding in Hugging Face's rotate-half form, with default, linear and Llama 3 frequency scaling
/// (transformers' <c>_compute_llama3_parameters</c>). Tables are fp32; they are cast to the activations' dtype per call.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor cos;   // (maxPositions, headDim)
    private readonly Tensor sin;

    public RotaryEmbedding(int headDim, int maxPositions, double theta, RopeScaling? scaling, Device device)
    {
        using var scope = NewDisposeScope();
        var invFreq = InverseFrequencies(headDim, theta, scaling);                       // (hd/2)
        var positions = arange(maxPositions, dtype: ScalarType.Float64);
        var freqs = outer(positions, invFreq);                                            // (P, hd/2)
        var emb = cat([freqs, freqs], dim: -1);                                           // (P, hd)
        cos = emb.cos().to(ScalarType.Float32).to(device).DetachFromDisposeScope();
        sin = emb.sin().to(ScalarType.Float32).to(device).DetachFromDisposeScope();
    }

    public int MaxPositions => (int)cos.shape[0];

    private static Tensor InverseFrequencies(int headDim, double theta, RopeScaling? scaling)
    {
        var invFreq = 1.0 / pow(theta, arange(0, headDim, 2, dtype: ScalarType.Float64) / headDim);
        if (scaling is null || scaling.Type == "default") return invFreq;
        if (scaling.Type == "linear") return invFreq / scaling.Factor;
        // Llama 3: keep high frequencies, divide low frequencies by the factor, interpolate smoothly in between.
        var lowFreqWavelen = scaling.OriginalMaxPositionEmbeddings / scaling.LowFreqFactor;
        var highFreqWavelen = scaling.OriginalMaxPositionEmbeddings / scaling.HighFreqFactor;
        var wavelen = 2 * Math.PI / invFreq;
        var scaled = where(wavelen > lowFreqWavelen, invFreq / scaling.Factor, invFreq);
        var smooth = (scaling.OriginalMaxPositionEmbeddings / wavelen - scaling.LowFreqFactor)
                     / (scaling.HighFreqFactor - scaling.LowFreqFactor);
        var smoothed = (1 - smooth) * scaled / scaling.Factor + smooth * scaled;
        var isMedium = (wavelen >= highFreqWavelen).logical_and(wavelen <= lowFreqWavelen);
        return where(isMedium, smoothed, scaled);
    }

    /// <summary>cos and sin tables (B, 1, T, hd) for the given positions (B, T), computed once per forward pass.</summary>
    public (Tensor Cos, Tensor Sin) Angles(Tensor positionIds, ScalarType dtype)
    {
        var flat = positionIds.reshape(-1);
        var shape = new[] { positionIds.shape[0], 1, positionIds.shape[1], cos.shape[1] };
        return (cos.index_select(0, flat).view(shape).to(dtype), sin.index_select(0, flat).view(shape).to(dtype));
    }

    /// <summary>Rotates q (B, nh, T, hd) and k (B, nkv, T, hd) by the angles from <see cref="Angles"/>.</summary>
    public static (Tensor q, Tensor k) Apply(Tensor q, Tensor k, (Tensor Cos, Tensor Sin) angles) =>
        (q * angles.Cos + RotateHalf(q) * angles.Sin, k * angles.Cos + RotateHalf(k) * angles.Sin);

    private static Tensor RotateHalf(Tensor x)
    {
        var half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return cat([-x2, x1], dim: -1);
    }

    public void Dispose()
    {
        cos.Dispose();
        sin.Dispose();
    }
}
