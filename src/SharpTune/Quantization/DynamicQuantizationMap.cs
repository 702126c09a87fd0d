using static TorchSharp.torch;

namespace SharpTune.Quantization;

/// <summary>
/// bitsandbytes' 8-bit dynamic data type (<c>create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)</c>): a decade
/// exponent from 1e-6 to 1 and a linear fraction whose resolution grows with the decade, 256 ascending values in
/// [-1, 1] (signed) or [0, 1] (unsigned). Built step by step in fp32 on the same libtorch ops as bitsandbytes (linspace,
/// the mean of neighbours, the decade scale), so it equals the map bitsandbytes builds on the same libtorch; libtorch
/// builds' linspace kernels round a few entries one float step apart.
/// </summary>
internal static class DynamicQuantizationMap
{
    private static readonly Lazy<float[]> SignedMap = new(() => Create(signed: true));
    private static readonly Lazy<float[]> UnsignedMap = new(() => Create(signed: false));

    /// <summary>The signed map: 127 positive values, their negatives, 0 and 1 (QLoRA's double quantization, 8-bit Adam's first moment).</summary>
    public static float[] Signed => SignedMap.Value;

    /// <summary>The unsigned map: 254 positive values, 0 and 1 (8-bit Adam's second moment, never negative).</summary>
    public static float[] Unsigned => UnsignedMap.Value;

    private static float[] Create(bool signed)
    {
        const int maxExponentBits = 7, nonSignBits = 7;
        double[] decades = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1];   // 10 ** (-(max_exponent_bits - 1) + i)
        var data = new List<float>();
        using (var scope = NewDisposeScope())
        {
            for (var i = 0; i < maxExponentBits; i++)
            {
                // The unsigned map spends the sign bit on a doubled fraction resolution.
                var fractionItems = (1 << (i + nonSignBits - maxExponentBits + (signed ? 0 : 1))) + 1;
                var boundaries = linspace(0.1, 1, fractionItems, dtype: ScalarType.Float32);
                var means = (boundaries.narrow(0, 0, fractionItems - 1) + boundaries.narrow(0, 1, fractionItems - 1)) / 2.0;
                data.AddRange((means * decades[i]).data<float>().ToArray());
                if (signed) data.AddRange((means * -decades[i]).data<float>().ToArray());
            }
        }
        data.Add(0f);
        data.Add(1f);
        if (data.Count != 256) throw new InvalidOperationException($"dynamic map has {data.Count} entries, expected 256");
        data.Sort();
        return data.ToArray();
    }
}
