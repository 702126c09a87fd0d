using System.Text.Json;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;

namespace SharpTune.Tokenization;

/// <summary>
/// Hugging Face's BPE model: a word's characters start as symbols and the lowest-ranked adjacent merge is applied
/// until none applies. Written here rather than on Microsoft.ML.Tokenizers' BpeTokenizer because its 2.0.1 options have
/// no byte fallback (unknown bytes are dropped silently) and no ignore_merges; the merge loop is small and this keeps
/// one faithful implementation for byte-level and SentencePiece-style vocabularies alike.
/// </summary>
internal sealed class BpeModel
{
    private const int MaxCachedWordLength = 256;
    private const int MaxCacheEntries = 200_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int Merged)> _merges;
    private readonly int? _unkId;
    private readonly bool _fuseUnk, _byteFallback, _ignoreMerges;
    private readonly int[]? _byteTokenIds;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    private BpeModel(Dictionary<string, int> vocab, Dictionary<long, (int, int)> merges, int? unkId, bool fuseUnk, bool byteFallback, bool ignoreMerges)
    {
        _vocab = vocab; _merges = merges; _unkId = unkId; _fuseUnk = fuseUnk; _byteFallback = byteFallback; _ignoreMerges = ignoreMerges;
        if (byteFallback)
        {
            _byteTokenIds = new int[256];
            for (int b = 0; b < 256; b++)
                _byteTokenIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
        }
    }

    /// <summary>The model vocabulary, token → id.</summary>
    public IReadOnlyDictionary<string, int> Vocabulary => _vocab;

    /// <param name="node">The "model" object, for its small fields and error paths.</param>
    /// <param name="modelElement">The same object as a document element, for its vocabulary and merges.</param>
    public static BpeModel FromJson(JsonNode? node, JsonElement modelElement, JsonFields json)
    {
        var obj = json.Object(node, "'model'");
        var type = json.OptionalString(obj, "type") ?? "BPE";
        if (type != "BPE")
            throw json.Error(obj, $"unsupported model type '{type}' (only BPE is implemented; WordPiece, Unigram and WordLevel are not)");
        foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (!string.IsNullOrEmpty(json.OptionalString(obj, affix)))
                throw json.Error(obj, $"BPE '{affix}' is not supported");
        // The Rust library skips merges at random on every encode when dropout is set (BPE-dropout); ignoring it would
        // quietly tokenize differently from it.
        if (obj["dropout"] is JsonValue dropout && (!dropout.TryGetValue<double>(out var p) || p != 0))
            throw json.Error(obj, $"BPE 'dropout' {dropout.ToJsonString()} is not supported (it makes the Rust library skip merges at random when encoding; set it to null for deterministic tokenization)");

        // The vocabulary and merges are most of a tokenizer.json (Gemma 3: 262k entries and 515k merges): they are read
        // straight from the parsed document's elements, since a JsonNode per entry costs several times the parse itself.
        var vocab = ReadVocabulary(modelElement, json);
        var merges = ReadMerges(modelElement, vocab, json);

        int? unkId = null;
        if (json.OptionalString(obj, "unk_token") is { } unk)
            unkId = vocab.TryGetValue(unk, out var u) ? u : throw json.Error(obj, $"unk_token '{unk}' is not in the vocabulary");
        return new BpeModel(vocab, merges, unkId, json.Bool(obj, "fuse_unk", false), json.Bool(obj, "byte_fallback", false), json.Bool(obj, "ignore_merges", false));
    }

    private static Dictionary<string, int> ReadVocabulary(JsonElement model, JsonFields json)
    {
        if (!model.TryGetProperty("vocab", out var vocabElement) || vocabElement.ValueKind != JsonValueKind.Object)
            throw json.Error("$.model.vocab", "expected model 'vocab' to be a JSON object");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in vocabElement.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out var id) || id < 0)
                throw json.Error($"$.model.vocab['{entry.Name}']", $"vocab entry '{entry.Name}' must map to a non-negative integer id");
            vocab[entry.Name] = id;
        }
        return vocab;
    }

    private static Dictionary<long, (int, int)> ReadMerges(JsonElement model, Dictionary<string, int> vocab, JsonFields json)
    {
        if (!model.TryGetProperty("merges", out var mergesElement) || mergesElement.ValueKind != JsonValueKind.Array)
            throw json.Error("$.model", "model needs a 'merges' array");
        var merges = new Dictionary<long, (int, int)>(mergesElement.GetArrayLength());
        var rank = 0;
        foreach (var merge in mergesElement.EnumerateArray())
        {
            var (left, right) = ParseMerge(merge, rank, json);
            if (!vocab.TryGetValue(left, out var l) || !vocab.TryGetValue(right, out var r) || !vocab.TryGetValue(left + right, out var merged))
                throw json.Error($"$.model.merges[{rank}]", $"merge #{rank} '{left} {right}' uses a token missing from the vocabulary");
            merges.TryAdd(PairKey(l, r), (rank, merged));
            rank++;
        }
        return merges;
    }

    /// <summary>Merges are written "a b" (older files) or ["a", "b"] (newer files, which allows spaces in tokens).</summary>
    private static (string, string) ParseMerge(JsonElement merge, int rank, JsonFields json)
    {
        if (merge.ValueKind == JsonValueKind.String && merge.GetString() is { Length: > 1 } s)
        {
            int space = s.IndexOf(' ', 1);
            if (space > 0) return (s[..space], s[(space + 1)..]);
        }
        else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                 && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            return (merge[0].GetString()!, merge[1].GetString()!);
        throw json.Error($"$.model.merges[{rank}]", "a merge must be \"left right\" or [\"left\", \"right\"]");
    }

    private static long PairKey(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Encodes one pre-token and appends its ids.</summary>
    public void Encode(string word, List<int> into)
    {
        if (word.Length == 0) return;
        if (word.Length <= MaxCachedWordLength && _cache.TryGetValue(word, out var cached)) { into.AddRange(cached); return; }
        var ids = _ignoreMerges && _vocab.TryGetValue(word, out var whole) ? [whole] : MergeWord(word);
        if (word.Length <= MaxCachedWordLength)
        {
            if (_cache.Count > MaxCacheEntries) _cache.Clear();
            _cache[word] = ids;
        }
        into.AddRange(ids);
    }

    private int[] MergeWord(string word)
    {
        var symbols = InitialSymbols(word);
        int n = symbols.Count;
        if (n == 1) return [symbols[0]];
        var ids = symbols.ToArray();
        var next = new int[n];
        var prev = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; alive[i] = true; }

        // Lowest rank first, leftmost first among equal ranks: the order Hugging Face's BPE uses.
        var queue = new PriorityQueue<int, long>();
        void Offer(int left)
        {
            int right = next[left];
            if (right >= 0 && _merges.TryGetValue(PairKey(ids[left], ids[right]), out var m))
                queue.Enqueue(left, ((long)m.Rank << 32) | (uint)left);
        }
        for (int i = 0; i + 1 < n; i++) Offer(i);

        while (queue.TryDequeue(out var left, out var priority))
        {
            int right = next[left];
            if (!alive[left] || right < 0) continue;
            if (!_merges.TryGetValue(PairKey(ids[left], ids[right]), out var m) || m.Rank != (int)(priority >> 32)) continue;
            ids[left] = m.Merged;
            alive[right] = false;
            next[left] = next[right];
            if (next[left] >= 0) prev[next[left]] = left;
            if (prev[left] >= 0) Offer(prev[left]);
            Offer(left);
        }

        var result = new List<int>();
        for (int i = 0; i >= 0; i = next[i]) result.Add(ids[i]);
        return result.ToArray();
    }

    /// <summary>One symbol per character; characters outside the vocabulary become their UTF-8 byte tokens
    /// (&lt;0x0A&gt;) when byte fallback is on, else the unknown token (consecutive ones fused if fuse_unk).</summary>
    private List<int> InitialSymbols(string word)
    {
        var symbols = new List<int>(word.Length);
        bool lastWasUnk = false;
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in word.EnumerateRunes())
        {
            var text = rune.ToString();
            if (_vocab.TryGetValue(text, out var id)) { symbols.Add(id); lastWasUnk = false; continue; }
            if (_byteTokenIds is not null)
            {
                int count = rune.EncodeToUtf8(utf8);
                bool all = true;
                for (int i = 0; i < count; i++) all &= _byteTokenIds[utf8[i]] >= 0;
                if (all)
                {
                    for (int i = 0; i < count; i++) symbols.Add(_byteTokenIds[utf8[i]]);
                    lastWasUnk = false;
                    continue;
                }
            }
            if (_unkId is not { } unk)
                throw new InvalidOperationException(
                    $"character U+{rune.Value:X4} is not in the tokenizer vocabulary and the tokenizer has no unk_token or byte fallback");
            if (!(_fuseUnk && lastWasUnk)) symbols.Add(unk);
            lastWasUnk = true;
        }
        return symbols;
    }
}
