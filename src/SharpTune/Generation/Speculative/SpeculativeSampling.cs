using static TorchSharp.torch;

namespace SharpTune.Generation.Speculative;

/// <summary>
/// The acceptance rules of transformers' assisted generation (huggingface/transformers@00a11b6,
/// src/transformers/generation/utils.py, <c>_speculative_sampling</c> and <c>_assisted_decoding</c>), over
/// probability rows of the model (p) and of the draft (q), both after the same logits processors.
/// </summary>
internal static class SpeculativeSampling
{
    /// <summary>
    /// Speculative sampling (Leviathan et al. 2023, Chen et al. 2023): candidate i is accepted when a uniform draw
    /// r_i ≤ p_i(x_i) / q_i(x_i) (fp32, as transformers) while every earlier one was; at the first rejection the next
    /// token is drawn from norm(max(0, p − q)) at that position (from p where that residual is all zero, p ≈ q, which
    /// rounding alone can reject); when all are accepted a bonus token is drawn from p's last row. The tokens are then
    /// distributed exactly as the model's own samples. Only p(x_i), q(x_i) and the one row drawn from are read.
    /// </summary>
    /// <param name="p">(k + 1, V) fp32 CPU: the model's probabilities at each candidate position, then the bonus position.</param>
    /// <param name="q">(k, V) fp32 CPU: the draft's probabilities the candidates were drawn from.</param>
    /// <param name="candidates">The k candidates.</param>
    /// <param name="uniform">k uniform draws in [0, 1).</param>
    /// <param name="draw">A token drawn from a (V) row of non-negative weights, not necessarily normalised.</param>
    /// <returns>The accepted candidates followed by one token from the model, and how many candidates were accepted.</returns>
    public static (int[] Tokens, int Accepted) Accept(Tensor p, Tensor q, IReadOnlyList<int> candidates, Func<int, float[]> uniform,
        Func<Tensor, int> draw)
    {
        using var scope = NewDisposeScope();
        var k = candidates.Count;
        var accepted = 0;
        if (k > 0)
        {
            var index = tensor(candidates.Select(c => (long)c).ToArray()).view(k, 1);
            var pi = p.narrow(0, 0, k).gather(1, index).view(k).data<float>().ToArray();
            var qi = q.gather(1, index).view(k).data<float>().ToArray();
            var r = uniform(k);
            while (accepted < k && r[accepted] <= pi[accepted] / qi[accepted]) accepted++;
        }
        Tensor weights;
        if (accepted < k)
        {
            var residual = (p[accepted] - q[accepted]).clamp_min(0);
            weights = residual.sum().item<float>() > 0 ? residual : p[accepted];
        }
        else weights = p[k];
        var tokens = new int[accepted + 1];
        for (var i = 0; i < accepted; i++) tokens[i] = candidates[i];
        tokens[accepted] = draw(weights);
        return (tokens, accepted);
    }

    /// <summary>
    /// Candidates without probabilities (prompt lookup), or greedy decoding: <paramref name="picked"/> holds the model's
    /// own choice at each of the k + 1 positions (argmax, or a sample from p); candidates are accepted while they equal
    /// it, and the model's choice at the first mismatch (or after the last candidate) follows.
    /// </summary>
    public static (int[] Tokens, int Accepted) AcceptMatching(IReadOnlyList<long> picked, IReadOnlyList<int> candidates)
    {
        var accepted = 0;
        while (accepted < candidates.Count && candidates[accepted] == picked[accepted]) accepted++;
        var tokens = new int[accepted + 1];
        for (var i = 0; i < accepted; i++) tokens[i] = candidates[i];
        tokens[accepted] = (int)picked[accepted];
        return (tokens, accepted);
    }
}
