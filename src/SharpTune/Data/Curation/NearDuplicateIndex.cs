using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace SharpTune.Data.Curation;

/// <summary>
/// An LSH index of MinHash signatures for finding near-duplicates in time linear in the number of rows: each row is
/// looked up in b band buckets and only bucket-mates are compared, never all pairs. Candidates are confirmed by their
/// estimated Jaccard ≥ <see cref="Threshold"/>. To keep memory near 2·k bytes per row, the low 16 bits of each
/// signature value are stored for confirmation (b-bit MinHash, Li &amp; König 2010; chance agreement 2^-16 is
/// negligible). At most <see cref="MaxComparisonsPerBucket"/> of the most recent members of a bucket are compared,
/// which bounds the work when thousands of rows share one bucket. Not thread-safe: use one index per thread.
/// </summary>
public sealed class NearDuplicateIndex
{
    private readonly Dictionary<ulong, int>[] _bucketHeads;
    private readonly List<int>[] _nextInBucket;
    private ushort[] _stored = new ushort[1024];
    private readonly HashSet<int> _seen = [];

    public NearDuplicateIndex(double threshold = 0.8, MinHashOptions? options = null)
    {
        Hasher = new MinHasher(options);
        Threshold = threshold;
        // Candidates are confirmed against the threshold, so a false positive costs one comparison while a false
        // negative keeps a duplicate: weight misses 9:1 (at t = 0.8, k = 128 this gives 14 bands of 9 rows, which
        // finds a pair at exactly t with probability 0.87, against 0.40 for the balanced 9×13).
        Parameters = LshParameters.ForThreshold(threshold, Hasher.Options.NumPermutations,
            falsePositiveWeight: 0.1, falseNegativeWeight: 0.9);
        _bucketHeads = new Dictionary<ulong, int>[Parameters.Bands];
        _nextInBucket = new List<int>[Parameters.Bands];
        for (int band = 0; band < Parameters.Bands; band++)
        {
            _bucketHeads[band] = new Dictionary<ulong, int>();
            _nextInBucket[band] = [];
        }
    }

    /// <summary>The hasher whose signatures this index holds.</summary>
    public MinHasher Hasher { get; }

    /// <summary>The Jaccard similarity at or above which two texts are near-duplicates.</summary>
    public double Threshold { get; }

    /// <summary>The banding chosen for <see cref="Threshold"/>.</summary>
    public LshParameters Parameters { get; }

    /// <summary>Bound on comparisons per bucket and query.</summary>
    public int MaxComparisonsPerBucket { get; init; } = 64;

    /// <summary>Rows indexed so far; ids are 0..Count-1 in insertion order.</summary>
    public int Count { get; private set; }

    /// <summary>Adds a signature and returns its id.</summary>
    public int Add(uint[] signature)
    {
        int id = Count++;
        int k = signature.Length;
        if (_stored.Length < Count * k) Array.Resize(ref _stored, Math.Max(_stored.Length * 2, Count * k));
        for (int i = 0; i < k; i++) _stored[id * k + i] = (ushort)signature[i];
        for (int band = 0; band < Parameters.Bands; band++)
        {
            var key = BandKey(signature, band);
            _nextInBucket[band].Add(_bucketHeads[band].TryGetValue(key, out var head) ? head : -1);
            _bucketHeads[band][key] = id;
        }
        return id;
    }

    /// <summary>The estimated Jaccard similarity between a signature and an indexed row.</summary>
    public double Similarity(uint[] signature, int id)
    {
        int k = signature.Length, equal = 0;
        var stored = _stored.AsSpan(id * k, k);
        for (int i = 0; i < k; i++) if ((ushort)signature[i] == stored[i]) equal++;
        return (double)equal / k;
    }

    /// <summary>Indexed rows sharing a band with <paramref name="signature"/> (each once, most recent first per bucket).</summary>
    public IEnumerable<int> Candidates(uint[] signature)
    {
        _seen.Clear();
        var result = new List<int>();
        for (int band = 0; band < Parameters.Bands; band++)
        {
            if (!_bucketHeads[band].TryGetValue(BandKey(signature, band), out var id)) continue;
            for (int compared = 0; id >= 0 && compared < MaxComparisonsPerBucket; id = _nextInBucket[band][id], compared++)
                if (_seen.Add(id)) result.Add(id);
        }
        return result;
    }

    /// <summary>The most similar indexed row whose estimated Jaccard reaches the threshold, or null.</summary>
    public (int Id, double Similarity)? FindNearDuplicate(uint[] signature)
    {
        (int, double)? best = null;
        foreach (var id in Candidates(signature))
        {
            double similarity = Similarity(signature, id);
            if (similarity >= Threshold && (best is null || similarity > best.Value.Item2)) best = (id, similarity);
        }
        return best;
    }

    private ulong BandKey(uint[] signature, int band)
    {
        var rows = signature.AsSpan(band * Parameters.RowsPerBand, Parameters.RowsPerBand);
        return XxHash3.HashToUInt64(MemoryMarshal.AsBytes(rows), seed: band);
    }
}
