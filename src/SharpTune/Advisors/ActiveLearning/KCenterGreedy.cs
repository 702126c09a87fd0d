namespace SharpTune.Advisors.ActiveLearning;

/// <summary>
/// k-center greedy (Sener &amp; Savarese 2018, "Active Learning for Convolutional Neural Networks: A Core-Set
/// Approach", Alg. 1): repeatedly take the point farthest (Euclidean) from everything chosen so far. Written here
/// because it is a dozen lines over plain arrays and no package the project uses offers it.
/// </summary>
public static class KCenterGreedy
{
    /// <summary>
    /// Picks <paramref name="k"/> indices of <paramref name="points"/>. With no <paramref name="centers"/> the first pick
    /// is <paramref name="first"/> (e.g. the most uncertain point); the order of the result is the order of picking.
    /// </summary>
    public static IReadOnlyList<int> Select(IReadOnlyList<float[]> points, int k, IReadOnlyList<float[]>? centers = null, int first = 0)
    {
        if (k <= 0 || points.Count == 0) return [];
        var nearest = new double[points.Count];
        Array.Fill(nearest, double.PositiveInfinity);
        foreach (var c in centers ?? [])
            Update(points, nearest, c);
        var chosen = new List<int>();
        var taken = new bool[points.Count];
        while (chosen.Count < Math.Min(k, points.Count))
        {
            var pick = chosen.Count == 0 && (centers is null || centers.Count == 0) ? first : ArgMax(nearest, taken);
            chosen.Add(pick);
            taken[pick] = true;
            Update(points, nearest, points[pick]);
        }
        return chosen;
    }

    private static void Update(IReadOnlyList<float[]> points, double[] nearest, float[] center)
    {
        for (var i = 0; i < points.Count; i++)
        {
            double d = 0;
            var p = points[i];
            for (var j = 0; j < p.Length; j++) d += (p[j] - center[j]) * (double)(p[j] - center[j]);
            nearest[i] = Math.Min(nearest[i], d);
        }
    }

    private static int ArgMax(double[] values, bool[] taken)
    {
        var best = -1;
        for (var i = 0; i < values.Length; i++)
            if (!taken[i] && (best < 0 || values[i] > values[best])) best = i;
        return best;
    }
}
