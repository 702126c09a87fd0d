namespace SharpTune.Evaluation;

/// <summary>
/// Transposes sacreBLEU-style references (one list per reference set, each aligned with the hypotheses) into the
/// references of each segment. A null reference is absent (a variable reference count, <c>nrefs:var</c>); an empty
/// string is a reference with no tokens, as in sacreBLEU since 2.2 (its base.py drops only <c>None</c>).
/// </summary>
internal static class ReferenceSets
{
    public static (List<List<string>> PerSegment, int? UniformCount) BySegment(
        IReadOnlyList<string> hypotheses, IReadOnlyList<IReadOnlyList<string?>> referenceSets)
    {
        ArgumentNullException.ThrowIfNull(hypotheses);
        ArgumentNullException.ThrowIfNull(referenceSets);
        if (referenceSets.Count == 0)
            throw new ArgumentException("At least one reference set is required.", nameof(referenceSets));
        for (int set = 0; set < referenceSets.Count; set++)
        {
            if (referenceSets[set] is null)
                throw new ArgumentException($"Reference set {set} is null.", nameof(referenceSets));
            if (referenceSets[set].Count != hypotheses.Count)
                throw new ArgumentException(
                    $"Reference set {set} has {referenceSets[set].Count} segments but there are {hypotheses.Count} hypotheses.",
                    nameof(referenceSets));
        }

        var perSegment = new List<List<string>>(hypotheses.Count);
        var counts = new HashSet<int>();
        for (int i = 0; i < hypotheses.Count; i++)
        {
            if (hypotheses[i] is null) throw new ArgumentException($"Hypothesis {i} is null.", nameof(hypotheses));
            var refs = referenceSets.Select(set => set[i]).OfType<string>().ToList();
            if (refs.Count == 0)
                throw new ArgumentException($"Segment {i} has no reference in any reference set (all are null).", nameof(referenceSets));
            counts.Add(refs.Count);
            perSegment.Add(refs);
        }
        int? uniform = counts.Count == 1 ? counts.First() : counts.Count == 0 ? referenceSets.Count : null;
        return (perSegment, uniform);
    }
}
