using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace SharpTune.Training.Objectives;

/// <summary>
/// The generalized Jensen–Shannon divergence of GKD (Agarwal et al. 2024, eq. 1), as TRL's
/// <c>GKDTrainer.generalized_jsd_loss</c> computes it (huggingface/trl@f2cd577, trl/experimental/gkd/gkd_trainer.py):
/// with s and t the student's and teacher's log-probabilities, β = 0 is KL(teacher‖student), β = 1 is
/// KL(student‖teacher), and otherwise, with the mixture m = log((1 − β)·e^s + β·e^t),
/// JSD_β = β·KL(teacher‖m) + (1 − β)·KL(student‖m). Worked in fp32 (fp64 inputs stay fp64) and summed over the vocabulary.
/// </summary>
public static class GeneralizedJsdLoss
{
    /// <summary>
    /// (N) divergence per row of <paramref name="studentLogits"/> and <paramref name="teacherLogits"/> (both (N, V)), at
    /// temperature 1 as TRL's <c>compute_loss</c> calls it.
    /// </summary>
    public static Tensor PerRow(Tensor studentLogits, Tensor teacherLogits, double beta)
    {
        if (beta is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(beta), beta, "beta must be in [0, 1]");
        var s = F.log_softmax(AtLeastFloat32(studentLogits), -1);   // (N, V)
        var t = F.log_softmax(AtLeastFloat32(teacherLogits), -1);   // (N, V)
        // F.kl_div(input, target, log_target=True) is exp(target)·(target − input), element by element.
        if (beta == 0) return (t.exp() * (t - s)).sum(-1);
        if (beta == 1) return (s.exp() * (s - t)).sum(-1);
        var mixture = stack([s + Math.Log(1 - beta), t + Math.Log(beta)]).logsumexp(0);   // (N, V): log((1−β)p_s + β p_t)
        var klTeacher = (t.exp() * (t - mixture)).sum(-1);
        var klStudent = (s.exp() * (s - mixture)).sum(-1);
        return beta * klTeacher + (1 - beta) * klStudent;
    }

    /// <summary>
    /// The divergence summed over the supervised positions of (B, T, V) logits: position i is compared where
    /// <paramref name="targets"/>[i] (the label of token i + 1, already shifted) is not -100. The caller divides by the
    /// step's supervised tokens (TRL's num_items_in_batch).
    /// </summary>
    public static Tensor Sum(Tensor studentLogits, Tensor teacherLogits, Tensor targets, double beta)
    {
        var rows = targets.reshape(-1).ne(BatchCollator.IgnoreIndex).nonzero().squeeze(1);        // (n)
        var v = studentLogits.shape[^1];
        return PerRow(studentLogits.reshape(-1, v).index_select(0, rows), teacherLogits.reshape(-1, v).index_select(0, rows), beta).sum();
    }

    private static Tensor AtLeastFloat32(Tensor x) => x.dtype == ScalarType.Float64 ? x : x.to(ScalarType.Float32);
}
