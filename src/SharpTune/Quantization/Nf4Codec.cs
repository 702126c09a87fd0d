namespace SharpTune.Quantization;

/// <summary>
/// 4-bit NormalFloat (QLoRA, Dettmers et al. 2023): 16 values at quantiles of N(0, 1) with an exact zero, bitsandbytes'
/// <c>create_normal_map(offset=0.9677083, use_extra_value=True)</c>, listed ascending so the 4-bit index is the rank.
/// </summary>
public sealed class Nf4Codec : FourBitCodec
{
    public static readonly Nf4Codec Instance = new();

    private Nf4Codec() { }

    public override QuantizationType Type => QuantizationType.Nf4;

    protected override float[] RawCode { get; } =
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];
}
