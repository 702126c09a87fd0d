namespace SharpTune.Data.Inspection;

/// <summary>
/// Scores how on-topic each text is: cosine similarity between TF-IDF vectors (raw term counts × smoothed IDF
/// ln((1+N)/(1+df)) + 1, as scikit-learn's TfidfVectorizer, L2-normalised) of the text and of a reference — a domain
/// description, or the mean vector of a seed set. Scores are in [0, 1]; off-topic rows score near 0.
/// </summary>
public static class TfIdfRelevance
{
    public static double[] Score(IReadOnlyList<string> texts, IReadOnlyList<string> reference)
    {
        if (reference.Count == 0) throw new ArgumentException("relevance needs a domain description or at least one seed text");
        var docs = texts.Select(Terms).ToList();
        var refs = reference.Select(Terms).ToList();
        var df = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var doc in docs.Concat(refs))
            foreach (var term in doc.Keys) df[term] = df.GetValueOrDefault(term) + 1;
        int n = docs.Count + refs.Count;
        double Idf(string term) => Math.Log((1.0 + n) / (1.0 + df.GetValueOrDefault(term))) + 1;

        var centroid = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var r in refs)
            foreach (var (term, weight) in Vector(r, Idf)) centroid[term] = centroid.GetValueOrDefault(term) + weight / refs.Count;
        double centroidNorm = Math.Sqrt(centroid.Values.Sum(v => v * v));
        return docs.Select(doc =>
        {
            if (centroidNorm == 0) return 0;
            double dot = Vector(doc, Idf).Sum(p => p.Value * centroid.GetValueOrDefault(p.Key));
            return dot / centroidNorm;
        }).ToArray();
    }

    private static Dictionary<string, int> Terms(string text)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (System.Text.RegularExpressions.Match m in Diversity.Word().Matches(text))
        {
            var term = m.Value.ToLowerInvariant();
            counts[term] = counts.GetValueOrDefault(term) + 1;
        }
        return counts;
    }

    private static Dictionary<string, double> Vector(Dictionary<string, int> terms, Func<string, double> idf)
    {
        var v = terms.ToDictionary(p => p.Key, p => p.Value * idf(p.Key), StringComparer.Ordinal);
        double norm = Math.Sqrt(v.Values.Sum(x => x * x));
        if (norm > 0) foreach (var key in v.Keys.ToList()) v[key] /= norm;
        return v;
    }
}
