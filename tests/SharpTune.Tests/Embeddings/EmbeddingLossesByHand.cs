using static TorchSharp.torch;

namespace SharpTune.Tests.Embeddings;

/// <summary>
/// sentence-transformers' embedding losses worked in doubles, the independent reference the MNRL, CoSENT and Matryoshka
/// tests compare SharpTune's tensors with.
/// </summary>
internal static class EmbeddingLossesByHand
{
    public static double Cos(double[] a, double[] b) =>
        a.Zip(b, (x, y) => x * y).Sum() / (Math.Sqrt(a.Sum(x => x * x)) * Math.Sqrt(b.Sum(x => x * x)));

    /// <summary>MNRL: mean_i −(s·cos(a_i, c_i) − log Σ_j exp(s·cos(a_i, c_j))), candidates = positives then negatives.</summary>
    public static double Mnrl(double[][] anchors, double[][] candidates, double scale) =>
        anchors.Select((a, i) =>
        {
            var s = candidates.Select(c => scale * Cos(a, c)).ToArray();
            var max = s.Max();
            return -(s[i] - (max + Math.Log(s.Sum(x => Math.Exp(x - max)))));
        }).Average();

    /// <summary>CoSENT: log(1 + Σ_{label_i &lt; label_j} exp(s_i − s_j)), s = scale · cos(u_i, v_i).</summary>
    public static double CoSent(double[][] u, double[][] v, double[] labels, double scale)
    {
        var s = u.Select((x, i) => scale * Cos(x, v[i])).ToArray();
        double sum = 1;
        for (var i = 0; i < s.Length; i++)
            for (var j = 0; j < s.Length; j++)
                if (labels[i] < labels[j]) sum += Math.Exp(s[i] - s[j]);
        return Math.Log(sum);
    }

    /// <summary>The rows as a float32 (rows, width) tensor.</summary>
    public static Tensor Rows(double[][] rows) => tensor(rows.SelectMany(r => r.Select(x => (float)x)).ToArray(), [rows.Length, rows[0].Length]);
}
