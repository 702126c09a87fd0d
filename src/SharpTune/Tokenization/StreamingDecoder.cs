namespace SharpTune.Tokenization;

/// <summary>
/// Turns a stream of generated ids into text pieces whose concatenation equals <see cref="HfTokenizer.Decode"/> of
/// all ids. Each push decodes a short window twice (the already-emitted tail, and the tail plus new ids) and emits the
/// difference, so decoder rules that depend on context (SentencePiece's leading space, byte tokens forming one
/// character) come out as in a full decode; text ending in an incomplete UTF-8 sequence (U+FFFD) is held back.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly HfTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly List<int> _ids = [];
    private int _prefixStart, _readStart;

    internal StreamingDecoder(HfTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Adds one id and returns the text it completes (possibly empty).</summary>
    public string Push(int id)
    {
        _ids.Add(id);
        return Emit(final: false);
    }

    /// <summary>Returns whatever is still held back (an unfinished byte sequence decodes to U+FFFD); call at the end.</summary>
    public string Flush() => Emit(final: true);

    private string Emit(bool final)
    {
        if (_readStart == _ids.Count) return "";
        var emitted = Decode(_prefixStart, _readStart);
        var extended = Decode(_prefixStart, _ids.Count);
        if (extended.Length <= emitted.Length || (!final && extended.EndsWith('\uFFFD'))) return "";
        _prefixStart = _readStart;
        _readStart = _ids.Count;
        return extended.StartsWith(emitted, StringComparison.Ordinal) ? extended[emitted.Length..] : extended[CommonPrefix(emitted, extended)..];
    }

    private string Decode(int from, int to) =>
        from == to ? "" : _tokenizer.Decode(_ids.GetRange(from, to - from), _skipSpecialTokens);

    private static int CommonPrefix(string a, string b)
    {
        int n = 0;
        while (n < a.Length && n < b.Length && a[n] == b[n]) n++;
        return n;
    }
}
