using static TorchSharp.torch;

namespace SharpTune.Training.Objectives;

/// <summary>
/// sentence-transformers' CoSENTLoss (UKPLab/sentence-transformers@45a69d044cab558a526a1c5d90ae4b3c0588d1cc,
/// sentence_transformers/losses/CoSENTLoss.py, <c>compute_loss_from_embeddings</c>): with s_i = scale · cos(u_i, v_i) for
/// each pair of the batch, loss = log(1 + Σ exp(s_i − s_j)) over every two pairs with score_i &lt; score_j — a pair
/// scored less similar should get the lower cosine. One value per batch, not a mean over pairs.
/// </summary>
public static class CoSentLoss
{
    /// <summary>sentence-transformers' default scale.</summary>
    public const double DefaultScale = 20.0;

    /// <summary>(P) scale · pairwise cosine similarity of <paramref name="first"/> (P, D) and <paramref name="second"/> (P, D), float32.</summary>
    public static Tensor Scores(Tensor first, Tensor second, double scale)
    {
        using var scope = NewDisposeScope();
        var u = Embeddings.EmbeddingPooling.Normalize(first.to(ScalarType.Float32));
        var v = Embeddings.EmbeddingPooling.Normalize(second.to(ScalarType.Float32));
        return ((u * v).sum(1) * scale).MoveToOuterDisposeScope();
    }

    /// <summary>The loss from <see cref="Scores"/> and the pairs' similarity labels (P).</summary>
    public static Tensor Compute(Tensor scores, Tensor labels)
    {
        using var scope = NewDisposeScope();
        var differences = scores.unsqueeze(1) - scores.unsqueeze(0);                         // (P, P): s_i − s_j
        var ordered = labels.unsqueeze(1).lt(labels.unsqueeze(0)).to(ScalarType.Float32);    // 1 where label_i < label_j
        var masked = differences - (1 - ordered) * 1e12;                                      // other entries vanish in exp()
        var all = cat([zeros(1, ScalarType.Float32, scores.device), masked.view(-1)]);        // e^0 = 1
        return all.logsumexp(0).MoveToOuterDisposeScope();
    }

    /// <summary><see cref="Compute(Tensor, Tensor)"/> of <see cref="Scores"/>.</summary>
    public static Tensor Compute(Tensor first, Tensor second, Tensor labels, double scale = DefaultScale)
    {
        using var scope = NewDisposeScope();
        return Compute(Scores(first, second, scale), labels.to(ScalarType.Float32)).MoveToOuterDisposeScope();
    }
}
