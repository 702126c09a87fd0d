namespace SharpTune.Generation.Speculative;

/// <summary>
/// The acceptance rules of transformers' assisted generation (huggingface/transformers@00a11b6,
/// src/transformers/generation/utils.py, <c>_speculative_sampling</c> and <c>_assisted_decoding</c>), over
/// probability rows of the model (p) and of the draft (q), both after temperature / top-k / top-p.
/// </summary>
internal static class SpeculativeSampling
{
    /// <summary>
    /// Speculative sampling (Leviathan et al. 2023, Chen et al. 2023): candidate i is accepted with probability
    /// min(1, p_i(x_i) / q_i(x_i)) while every earlier one was; at the first rejection the next token is drawn from
    /// norm(max(0, p − q)) at that position; when all are accepted a bonus token is drawn from p's last row. The tokens
    /// are then distributed exactly as the model's own samples.
    /// </summary>
    /// <param name="p">k + 1 rows of the model's probabilities (one per candidate, then the bonus position).</param>
    /// <param name="q">k rows of the draft's probabilities the candidates were drawn from.</param>
    /// <param name="candidates">The k candidates.</param>
    /// <param name="random">Uniform draws in [0, 1).</param>
    /// <returns>The accepted candidates followed by one token from the model, and how many candidates were accepted.</returns>
    public static (int[] Tokens, int Accepted) Accept(IReadOnlyList<double[]> p, IReadOnlyList<double[]> q, IReadOnlyList<int> candidates, Random random)
    {
        var k = candidates.Count;
        var accepted = 0;
        // transformers draws r ~ U[0, 1) and accepts when r <= p/q.
        while (accepted < k && random.NextDouble() <= p[accepted][candidates[accepted]] / q[accepted][candidates[accepted]]) accepted++;
        int next;
        if (accepted < k)
        {
            var row = p[accepted];
            var draft = q[accepted];
            var residual = new double[row.Length];
            for (var v = 0; v < row.Length; v++) residual[v] = Math.Max(0, row[v] - draft[v]);
            next = Draw(residual, random);
        }
        else next = Draw(p[k], random);
        var tokens = new int[accepted + 1];
        for (var i = 0; i < accepted; i++) tokens[i] = candidates[i];
        tokens[accepted] = next;
        return (tokens, accepted);
    }

    /// <summary>
    /// Candidates without probabilities (prompt lookup), or greedy decoding: <paramref name="picked"/> holds the model's
    /// own choice at each of the k + 1 positions (argmax, or a sample from p); candidates are accepted while they equal
    /// it, and the model's choice at the first mismatch (or after the last candidate) follows.
    /// </summary>
    public static (int[] Tokens, int Accepted) AcceptMatching(IReadOnlyList<int> picked, IReadOnlyList<int> candidates)
    {
        var accepted = 0;
        while (accepted < candidates.Count && candidates[accepted] == picked[accepted]) accepted++;
        var tokens = new int[accepted + 1];
        for (var i = 0; i < accepted; i++) tokens[i] = candidates[i];
        tokens[accepted] = picked[accepted];
        return (tokens, accepted);
    }

    /// <summary>A draw from the (not necessarily normalised) non-negative weights.</summary>
    public static int Draw(double[] weights, Random random)
    {
        var total = 0.0;
        foreach (var w in weights) total += w;
        if (!(total > 0)) throw new InvalidOperationException("no token has any probability left to draw");
        var target = random.NextDouble() * total;
        var last = -1;
        for (var v = 0; v < weights.Length; v++)
        {
            if (weights[v] <= 0) continue;
            last = v;
            target -= weights[v];
            if (target < 0) return v;
        }
        return last;   // rounding left a sliver: the last token with weight
    }
}
