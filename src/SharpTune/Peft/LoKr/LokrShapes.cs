namespace SharpTune.Peft.LoKr;

/// <summary>
/// How PEFT's LoKr splits a Linear layer's (out, in) weight into a Kronecker product (huggingface/peft@5d602fdbff04c33c1c4de55cda9d4ae1d7cb7e40,
/// tuners/lokr/layer.py, <c>factorization</c> and <c>LoKrLayer.update_layer</c>): out = a·b and in = c·d with
/// (c, d) = factorization(in), (a, b) = factorization(out); ΔW = kron(w1 (a, c), w2 (b, d)).
/// </summary>
/// <param name="OutLeft">a: the left factor's rows.</param>
/// <param name="OutRight">b: the right factor's rows.</param>
/// <param name="InLeft">c: the left factor's columns.</param>
/// <param name="InRight">d: the right factor's columns.</param>
/// <param name="UseW1">Whether the left factor is one full matrix lokr_w1 (a, c), else lokr_w1_a (a, r) · lokr_w1_b (r, c).</param>
/// <param name="UseW2">Whether the right factor is one full matrix lokr_w2 (b, d), else lokr_w2_a (b, r) · lokr_w2_b (r, d).</param>
public sealed record LokrShapes(long OutLeft, long OutRight, long InLeft, long InRight, bool UseW1, bool UseW2)
{
    /// <summary>The shapes PEFT gives a Linear layer of <paramref name="inFeatures"/> → <paramref name="outFeatures"/> with rank <paramref name="r"/>.</summary>
    public static LokrShapes For(long inFeatures, long outFeatures, int r, bool decomposeBoth, int decomposeFactor)
    {
        var (inLeft, inRight) = Factorization(inFeatures, decomposeFactor);
        var (outLeft, outRight) = Factorization(outFeatures, decomposeFactor);
        // update_layer: use_w1 = not (decompose_both and r < max(a, c) / 2); use_w2 = not (r < max(b, d) / 2), with
        // Python's true division.
        var useW1 = !(decomposeBoth && r < Math.Max(outLeft, inLeft) / 2.0);
        var useW2 = !(r < Math.Max(outRight, inRight) / 2.0);
        return new LokrShapes(outLeft, outRight, inLeft, inRight, useW1, useW2);
    }

    /// <summary>
    /// PEFT's <c>factorization(dimension, factor)</c>: two numbers (m ≤ n) whose product is <paramref name="dimension"/>.
    /// A positive <paramref name="factor"/> that divides the dimension gives (factor, dimension / factor) as it stands
    /// (not reordered); otherwise each next divisor m is taken while m &lt; n and m does not pass the factor (-1: no
    /// limit), then the pair is ordered. PEFT's sum test compares with 1 + dimension, fixed before the loop, which no
    /// divisor pair exceeds; it is kept as written. So the walk stops one divisor past the square root: 768 → (24, 32).
    /// </summary>
    public static (long M, long N) Factorization(long dimension, int factor = -1)
    {
        if (factor > 0 && dimension % factor == 0) return (factor, dimension / factor);
        long limit = factor == -1 ? dimension : factor;
        long m = 1, n = dimension;
        var length = m + n;
        while (m < n)
        {
            var newM = m + 1;
            while (dimension % newM != 0) newM++;
            var newN = dimension / newM;
            if (newM + newN > length || newM > limit) break;
            (m, n) = (newM, newN);
        }
        return m > n ? (n, m) : (m, n);
    }
}
