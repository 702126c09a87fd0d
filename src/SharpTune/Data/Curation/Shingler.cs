using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace SharpTune.Data.Curation;

/// <summary>What a shingle is made of.</summary>
public enum ShingleUnit
{
    /// <summary>Character n-grams of the normalised text: robust for short rows, where one changed word would
    /// otherwise remove most word shingles.</summary>
    Characters,

    /// <summary>Word n-grams: the usual choice for long documents.</summary>
    Words,
}

/// <summary>Turns a normalised text into the set of 64-bit hashes of its n-gram shingles.</summary>
public static class Shingler
{
    /// <summary>
    /// The distinct shingle hashes of <paramref name="normalizedText"/>. A text shorter than one shingle yields one
    /// shingle (itself), so short texts still compare; an empty text yields none.
    /// </summary>
    public static HashSet<ulong> Shingles(string normalizedText, ShingleUnit unit, int size)
    {
        var result = new HashSet<ulong>();
        if (normalizedText.Length == 0) return result;
        if (unit == ShingleUnit.Characters)
        {
            var span = normalizedText.AsSpan();
            if (span.Length <= size) { result.Add(Hash(span)); return result; }
            for (int i = 0; i + size <= span.Length; i++) result.Add(Hash(span.Slice(i, size)));
            return result;
        }
        var words = normalizedText.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words.Length <= size) { result.Add(Hash(string.Join(' ', words))); return result; }
        for (int i = 0; i + size <= words.Length; i++) result.Add(Hash(string.Join(' ', words, i, size)));
        return result;
    }

    private static ulong Hash(ReadOnlySpan<char> chars) => XxHash3.HashToUInt64(MemoryMarshal.AsBytes(chars));

    /// <summary>The exact Jaccard similarity |A∩B| / |A∪B| of two shingle sets (1 when both are empty).</summary>
    public static double Jaccard(IReadOnlySet<ulong> a, IReadOnlySet<ulong> b)
    {
        if (a.Count == 0 && b.Count == 0) return 1;
        var (small, large) = a.Count <= b.Count ? (a, b) : (b, a);
        int intersection = small.Count(large.Contains);
        return (double)intersection / (a.Count + b.Count - intersection);
    }
}
