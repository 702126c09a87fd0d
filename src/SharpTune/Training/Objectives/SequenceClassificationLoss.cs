using SharpTune.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training.Objectives;

/// <summary>
/// The loss of a <c>*ForSequenceClassification</c> head, as transformers' ForSequenceClassificationLoss picks it
/// (src/transformers/loss/loss_utils.py, huggingface/transformers@d0fed636753eeb35d790126c4496d06847983d60): regression →
/// MSE of the squeezed logits against the targets; single_label_classification → mean cross-entropy over the rows;
/// multi_label_classification → BCEWithLogitsLoss() of the (B, num_labels) logits against the multi-hot labels, i.e. the
/// mean over all B · num_labels entries of −[y·logσ(x) + (1 − y)·logσ(−x)].
/// </summary>
public static class SequenceClassificationLoss
{
    /// <param name="pooledLogits">(B, num_labels).</param>
    /// <param name="labels">(B) int64 class ids, float targets for regression, or (B, num_labels) 0/1 floats for multi-label.</param>
    /// <param name="problemType">One of <see cref="SequenceClassificationConfig"/>'s problem types.</param>
    /// <returns>A scalar: the mean over the rows.</returns>
    public static Tensor Compute(Tensor pooledLogits, Tensor labels, string problemType) => problemType switch
    {
        SequenceClassificationConfig.Regression => F.mse_loss(pooledLogits.view(-1).to(ScalarType.Float32), labels.view(-1).to(ScalarType.Float32)),
        SequenceClassificationConfig.SingleLabelClassification =>
            F.cross_entropy(pooledLogits.view(-1, pooledLogits.shape[^1]).to(ScalarType.Float32), labels.view(-1).to(ScalarType.Int64)),
        SequenceClassificationConfig.MultiLabelClassification =>
            F.binary_cross_entropy_with_logits(pooledLogits.to(ScalarType.Float32), labels.to(ScalarType.Float32)),
        _ => throw new NotSupportedException($"problem_type '{problemType}' is not one of {SequenceClassificationConfig.SingleLabelClassification}, " +
                                             $"{SequenceClassificationConfig.MultiLabelClassification}, {SequenceClassificationConfig.Regression}"),
    };
}
