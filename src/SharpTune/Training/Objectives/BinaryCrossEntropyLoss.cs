using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training.Objectives;

/// <summary>
/// sentence-transformers' CrossEncoder BinaryCrossEntropyLoss
/// (UKPLab/sentence-transformers@0dafdbe896885e56bc235912d9deb316a827f3cb,
/// sentence_transformers/cross_encoder/losses/BinaryCrossEntropyLoss.py): torch's BCEWithLogitsLoss(pos_weight) of each
/// pair's logit x against its relevance y in [0, 1], −[p·y·logσ(x) + (1 − y)·logσ(−x)] with p the pos_weight (1 when
/// unset); its default activation_fct is the identity, so the loss reads the raw logit.
/// </summary>
public static class BinaryCrossEntropyLoss
{
    /// <param name="logits">(B) or (B, 1): one logit per pair.</param>
    /// <param name="labels">(B) relevances from 0 to 1.</param>
    /// <param name="posWeight">The weight of the relevant term; null = 1.</param>
    /// <returns>(B) float32: each pair's loss (BCEWithLogitsLoss' mean is their mean).</returns>
    public static Tensor PerPair(Tensor logits, Tensor labels, double? posWeight = null)
    {
        var x = logits.reshape(-1).to(ScalarType.Float32);
        var y = labels.reshape(-1).to(ScalarType.Float32).to(x.device);
        var relevant = y * F.logsigmoid(x);
        if (posWeight is { } p) relevant = relevant * p;
        return -(relevant + (1 - y) * F.logsigmoid(-x));
    }
}
