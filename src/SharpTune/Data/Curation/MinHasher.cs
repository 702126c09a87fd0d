using System.Numerics;

namespace SharpTune.Data.Curation;

/// <summary>
/// MinHash settings. Defaults: 128 permutations over character 5-grams of the normalised text, seed 42. The standard
/// error of a Jaccard estimate is sqrt(J(1−J)/k): at most 0.044 for k = 128.
/// </summary>
public sealed record MinHashOptions(int NumPermutations = 128, ShingleUnit Unit = ShingleUnit.Characters, int ShingleSize = 5, ulong Seed = 42)
{
    public static MinHashOptions Default { get; } = new();
}

/// <summary>
/// Computes MinHash signatures (Broder 1997): for each of k hash functions, the minimum hash over a text's shingles;
/// the fraction of equal positions in two signatures estimates the Jaccard similarity of their shingle sets.
/// The k functions are h_i(x) = high 32 bits of (a_i·x + b_i) mod 2^64 with odd a_i, applied to 64-bit XxHash3
/// shingle hashes; a_i, b_i come from SplitMix64 seeded with <see cref="MinHashOptions.Seed"/>, so signatures are
/// reproducible across runs and machines.
/// </summary>
public sealed class MinHasher
{
    private readonly ulong[] _a;
    private readonly ulong[] _b;

    public MinHasher(MinHashOptions? options = null)
    {
        Options = options ?? MinHashOptions.Default;
        if (Options.NumPermutations <= 0) throw new ArgumentOutOfRangeException(nameof(options), "NumPermutations must be positive");
        if (Options.ShingleSize <= 0) throw new ArgumentOutOfRangeException(nameof(options), "ShingleSize must be positive");
        int k = Options.NumPermutations;
        // Padded to a whole number of SIMD vectors; the padding lanes are computed and ignored.
        int padded = (k + Vector<ulong>.Count - 1) / Vector<ulong>.Count * Vector<ulong>.Count;
        _a = new ulong[padded];
        _b = new ulong[padded];
        ulong state = Options.Seed;
        for (int i = 0; i < padded; i++)
        {
            _a[i] = SplitMix64(ref state) | 1UL;
            _b[i] = SplitMix64(ref state);
        }
    }

    public MinHashOptions Options { get; }

    /// <summary>The signature of a raw text (normalised and shingled here).</summary>
    public uint[] Signature(string text) => SignatureOfNormalized(TextNormalizer.Normalize(text));

    /// <summary>The signature of a text already passed through <see cref="TextNormalizer.Normalize"/>.</summary>
    public uint[] SignatureOfNormalized(string normalizedText) =>
        SignatureOfShingles(Shingler.Shingles(normalizedText, Options.Unit, Options.ShingleSize));

    /// <summary>The signature of a shingle-hash set. An empty set gives all uint.MaxValue (similar only to another empty text).</summary>
    public uint[] SignatureOfShingles(IEnumerable<ulong> shingles)
    {
        int padded = _a.Length;
        Span<ulong> mins = padded <= 512 ? stackalloc ulong[padded] : new ulong[padded];
        mins.Fill(ulong.MaxValue);
        int width = Vector<ulong>.Count;
        foreach (var x in shingles)
        {
            var vx = new Vector<ulong>(x);
            for (int i = 0; i < padded; i += width)
            {
                var h = Vector.ShiftRightLogical(new Vector<ulong>(_a, i) * vx + new Vector<ulong>(_b, i), 32);
                Vector.Min(new Vector<ulong>(mins[i..]), h).CopyTo(mins[i..]);
            }
        }
        var signature = new uint[Options.NumPermutations];
        for (int i = 0; i < signature.Length; i++) signature[i] = mins[i] == ulong.MaxValue ? uint.MaxValue : (uint)mins[i];
        return signature;
    }

    /// <summary>The estimated Jaccard similarity: the fraction of positions where two signatures agree.</summary>
    public static double EstimateJaccard(ReadOnlySpan<uint> a, ReadOnlySpan<uint> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"signatures differ in length ({a.Length} vs {b.Length})");
        int equal = 0;
        for (int i = 0; i < a.Length; i++) if (a[i] == b[i]) equal++;
        return (double)equal / a.Length;
    }

    /// <summary>The exact Jaccard similarity of two texts' shingle sets under these options (the quantity MinHash estimates).</summary>
    public double ExactJaccard(string a, string b) => Shingler.Jaccard(
        Shingler.Shingles(TextNormalizer.Normalize(a), Options.Unit, Options.ShingleSize),
        Shingler.Shingles(TextNormalizer.Normalize(b), Options.Unit, Options.ShingleSize));

    private static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
