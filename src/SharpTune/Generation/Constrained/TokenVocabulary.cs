using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using SharpTune.Tokenization;

namespace SharpTune.Generation.Constrained;

/// <summary>
/// What each token of a tokenizer writes, precomputed once per tokenizer (and logits width) for constrained decoding:
/// its bytes, a trie of all ordinary tokens, the tokens that are plain string text (any bytes but a quote, backslash,
/// control character or partial UTF-8 character: inside a JSON string they are always allowed and change nothing),
/// a trie of the rest, and the special tokens (allowed only where a grammar writes their text, e.g. a tool-call marker).
/// </summary>
public sealed class TokenVocabulary
{
    private static readonly ConditionalWeakTable<HfTokenizer, ConcurrentDictionary<int, TokenVocabulary>> Cache = new();

    private TokenVocabulary(HfTokenizer tokenizer, int width)
    {
        Width = width;
        Bytes = new byte[width][];
        var ordinary = new List<(int, byte[])>();
        var plain = new List<int>();
        var other = new List<(int, byte[])>();
        var special = new List<int>();
        for (var id = 0; id < width; id++)
        {
            var bytes = tokenizer.TokenBytes(id);
            Bytes[id] = bytes ?? [];
            if (bytes is null || bytes.Length == 0) continue;
            if (tokenizer.IsSpecial(id)) { special.Add(id); continue; }
            ordinary.Add((id, bytes));
            if (IsPlainStringText(bytes)) plain.Add(id); else other.Add((id, bytes));
        }
        All = new TokenTrie(ordinary);
        NonPlain = new TokenTrie(other);
        PlainStringTokens = plain.ToArray();
        SpecialTokens = special.ToArray();
    }

    /// <summary>The vocabulary of <paramref name="tokenizer"/> for logits of <paramref name="width"/> columns (cached).</summary>
    public static TokenVocabulary For(HfTokenizer tokenizer, int width) =>
        Cache.GetValue(tokenizer, _ => new ConcurrentDictionary<int, TokenVocabulary>()).GetOrAdd(width, w => new TokenVocabulary(tokenizer, w));

    /// <summary>Logits columns (the model's vocabulary size; ids the tokenizer lacks are never allowed).</summary>
    public int Width { get; }

    /// <summary>Each id's bytes (empty for ids that write nothing).</summary>
    internal byte[][] Bytes { get; }

    internal TokenTrie All { get; }
    internal TokenTrie NonPlain { get; }
    internal int[] PlainStringTokens { get; }
    internal int[] SpecialTokens { get; }

    private static bool IsPlainStringText(byte[] bytes)
    {
        var i = 0;
        while (i < bytes.Length)
        {
            var b = bytes[i];
            if (b == '"' || b == '\\' || b < 0x20) return false;
            var length = b < 0x80 ? 1 : b is >= 0xC2 and <= 0xDF ? 2 : b is >= 0xE0 and <= 0xEF ? 3 : b is >= 0xF0 and <= 0xF4 ? 4 : 0;
            if (length == 0 || i + length > bytes.Length) return false;
            var (low, high) = b switch { 0xE0 => (0xA0, 0xBF), 0xED => (0x80, 0x9F), 0xF0 => (0x90, 0xBF), 0xF4 => (0x80, 0x8F), _ => (0x80, 0xBF) };
            if (length > 1 && (bytes[i + 1] < low || bytes[i + 1] > high)) return false;
            for (var k = 2; k < length; k++)
                if (bytes[i + k] is < 0x80 or > 0xBF) return false;
            i += length;
        }
        return true;
    }
}
