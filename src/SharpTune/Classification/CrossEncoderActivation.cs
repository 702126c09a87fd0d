namespace SharpTune.Classification;

/// <summary>
/// The functions a cross-encoder's config.json may name for turning its logit into a score
/// (<see cref="Models.SequenceClassificationConfig.CrossEncoderActivation"/>), and sentence-transformers' default:
/// sigmoid for one label (CrossEncoder.get_default_activation_fn, sentence-transformers v4,
/// sentence_transformers/cross_encoder/CrossEncoder.py).
/// </summary>
public static class CrossEncoderActivation
{
    public const string Sigmoid = "torch.nn.modules.activation.Sigmoid";
    public const string Identity = "torch.nn.modules.linear.Identity";
    public const string Tanh = "torch.nn.modules.activation.Tanh";

    /// <summary>The function <paramref name="name"/> names (null = the default, sigmoid).</summary>
    /// <param name="source">The file the name came from, for the error.</param>
    /// <exception cref="NotSupportedException">A function other than Sigmoid, Identity or Tanh.</exception>
    public static Func<float, float> Resolve(string? name, string source) => (name ?? Sigmoid) switch
    {
        Sigmoid => x => 1f / (1f + MathF.Exp(-x)),
        Identity => x => x,
        Tanh => MathF.Tanh,
        var other => throw new NotSupportedException(
            $"{source}: the cross-encoder activation '{other}' is not supported (supported: {Sigmoid}, {Identity}, {Tanh})"),
    };
}
