using static TorchSharp.torch;

namespace SharpTune.Models;

/// <summary>
/// NEFTune's noise (Jain et al. 2023, "NEFTune: Noisy Embeddings Improve Instruction Finetuning"), exactly as
/// transformers' <c>neftune_post_forward_hook</c> (integrations/neftune.py) adds it to the input embeddings (B, T, C):
/// <c>output + zeros_like(output).uniform_(-mag, mag)</c>, mag = α / √(T·C). T is the batch's padded length, so padding
/// counts; only the word embeddings are noised (prompt tuning's virtual tokens are prepended after, as PEFT does).
/// </summary>
internal static class NeftuneNoise
{
    /// <summary>
    /// mag = α / √(T·C) rounded as torch computes it in the hook: <c>torch.sqrt(torch.tensor(T * C))</c> is a float32
    /// square root, and <c>alpha / tensor</c> is Tensor.__rdiv__, <c>reciprocal() * alpha</c>, both in float32.
    /// </summary>
    internal static double Magnitude(double alpha, long sequenceLength, long hiddenSize)
    {
        var root = MathF.Sqrt(sequenceLength * hiddenSize);
        return (float)((float)(1f / root) * (float)alpha);
    }

    /// <summary>
    /// <paramref name="embeddings"/> (B, T, C) plus noise uniform in [-mag, mag) drawn from the default generator in the
    /// embeddings' dtype, as the hook draws it; the noise takes no gradient.
    /// </summary>
    internal static Tensor AddTo(Tensor embeddings, double alpha)
    {
        using var scope = NewDisposeScope();
        var magnitude = Magnitude(alpha, embeddings.size(1), embeddings.size(2));
        var noise = zeros_like(embeddings).uniform_(-magnitude, magnitude);
        return (embeddings + noise).MoveToOuterDisposeScope();
    }
}
