namespace SharpTune.Quantization;

/// <summary>
/// bitsandbytes' FP4: 1 sign bit, 2 exponent bits (bias 2), 1 mantissa bit, listed by bit pattern and divided by the
/// largest magnitude, 12 — <c>get_4bit_type("fp4")</c>. Pattern 8 is +0, not −0: bitsandbytes lists it as the Python
/// integer <c>-0</c>, which is 0, so a value stored with pattern 8 dequantizes to +0.
/// </summary>
public sealed class Fp4Codec : FourBitCodec
{
    public static readonly Fp4Codec Instance = new();

    private Fp4Codec() { }

    public override QuantizationType Type => QuantizationType.Fp4;

    protected override float[] RawCode { get; } =
        [0f, 0.0625f, 8f, 12f, 4f, 6f, 2f, 3f, 0f, -0.0625f, -8f, -12f, -4f, -6f, -2f, -3f];
}
