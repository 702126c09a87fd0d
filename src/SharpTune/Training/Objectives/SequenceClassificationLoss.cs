using SharpTune.Models;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training.Objectives;

/// <summary>
/// The loss of a <c>*ForSequenceClassification</c> head, as transformers' ForSequenceClassificationLoss picks it
/// (src/transformers/loss/loss_utils.py): regression → MSE of the squeezed
/// logits against the targets; single_label_classification → mean cross-entropy over the rows.
/// </summary>
public static class SequenceClassificationLoss
{
    /// <param name="pooledLogits">(B, num_labels).</param>
    /// <param name="labels">(B) int64 class ids, or float targets for regression.</param>
    /// <param name="problemType">One of <see cref="SequenceClassificationConfig"/>'s problem types.</param>
    /// <returns>A scalar: the mean over the rows.</returns>
    public static Tensor Compute(Tensor pooledLogits, Tensor labels, string problemType) => problemType switch
    {
        SequenceClassificationConfig.Regression => F.mse_loss(pooledLogits.view(-1).to(ScalarType.Float32), labels.view(-1).to(ScalarType.Float32)),
        SequenceClassificationConfig.SingleLabelClassification =>
            F.cross_entropy(pooledLogits.view(-1, pooledLogits.shape[^1]).to(ScalarType.Float32), labels.view(-1).to(ScalarType.Int64)),
        _ => throw new NotSupportedException($"problem_type '{problemType}' is not trained by SharpTune (regression and single_label_classification are)"),
    };
}
