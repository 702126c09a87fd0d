namespace SharpTune.Data.Curation;

/// <summary>Groups texts into near-duplicate clusters (connected components of "estimated Jaccard ≥ threshold").</summary>
public static class NearDuplicateClusters
{
    /// <summary>
    /// The cluster of each text, as the index of the cluster's first member; a text with no near-duplicate is its own
    /// cluster. Linear in the number of texts (LSH candidates only).
    /// </summary>
    public static int[] Assign(IReadOnlyList<string> texts, double threshold = 0.8, MinHashOptions? options = null)
    {
        var index = new NearDuplicateIndex(threshold, options);
        var parent = new int[texts.Count];
        for (int i = 0; i < texts.Count; i++)
        {
            parent[i] = i;
            var signature = index.Hasher.Signature(texts[i]);
            foreach (var candidate in index.Candidates(signature))
                if (Find(parent, candidate) != Find(parent, i) && index.Similarity(signature, candidate) >= threshold)
                    Union(parent, candidate, i);
            index.Add(signature);
        }
        var cluster = new int[texts.Count];
        for (int i = 0; i < texts.Count; i++) cluster[i] = Find(parent, i);
        return cluster;
    }

    /// <summary>Clusters with more than one member, each as its member indices in order.</summary>
    public static List<int[]> Groups(int[] clusterOf) =>
        clusterOf.Select((cluster, i) => (cluster, i)).GroupBy(p => p.cluster)
            .Where(g => g.Count() > 1).Select(g => g.Select(p => p.i).ToArray()).ToList();

    private static int Find(int[] parent, int x)
    {
        while (parent[x] != x) x = parent[x] = parent[parent[x]];
        return x;
    }

    private static void Union(int[] parent, int a, int b)
    {
        int ra = Find(parent, a), rb = Find(parent, b);
        // The smaller index becomes the root so a cluster is named by its first member.
        if (ra < rb) parent[rb] = ra; else parent[ra] = rb;
    }
}
