namespace SharpTune.Tokenization;

/// <summary>
/// Turns a stream of generated ids into text pieces whose concatenation equals <see cref="HfTokenizer.Decode"/> of
/// all ids (or, given the prompt as context, the text the ids add to the prompt's decoded text). Each push decodes a short window twice (the already-emitted tail, and the tail plus new ids) and emits the
/// difference, so decoder rules that depend on context (SentencePiece's leading space, byte tokens forming one
/// character) come out as in a full decode; text ending in an incomplete UTF-8 sequence (U+FFFD) is held back.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly HfTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly List<int> _ids = [];
    private int _prefixStart, _readStart;

    /// <summary>
    /// How many of the prompt's last ids are decoded as context: enough for a byte sequence split over tokens, as
    /// vLLM's incremental detokenizer starts from the prompt's last five.
    /// </summary>
    private const int ContextIds = 6;

    internal StreamingDecoder(HfTokenizer tokenizer, bool skipSpecialTokens, IReadOnlyList<int>? context = null)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        // The generated text continues the prompt: decoded after the prompt's tail, a SentencePiece word's leading
        // space survives ("Once" + "▁upon" is " upon"), where decoding the new ids alone drops it as a text's start.
        if (context is { Count: > 0 })
        {
            for (var i = Math.Max(0, context.Count - ContextIds); i < context.Count; i++) _ids.Add(context[i]);
            _readStart = _ids.Count;
        }
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
