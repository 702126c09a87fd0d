namespace SharpTune.Generation.Constrained;

/// <summary>
/// The byte strings of a set of tokens as a trie in flat arrays (first child, next sibling, byte, tokens ending here),
/// so a mask walk shares the work for common prefixes and skips every token under a prefix the grammar rejects.
/// </summary>
internal sealed class TokenTrie
{
    private readonly int[] firstChild, nextSibling, tokenStart, tokenCount;
    private readonly byte[] label;
    private readonly int[] tokens;

    public TokenTrie(IEnumerable<(int Id, byte[] Bytes)> entries)
    {
        var sorted = entries.Where(e => e.Bytes.Length > 0).OrderBy(e => e.Bytes, ByteOrder.Instance).ThenBy(e => e.Id).ToArray();
        var first = new List<int> { -1 };
        var sibling = new List<int> { -1 };
        var lastChild = new List<int> { -1 };
        var labels = new List<byte> { 0 };
        var start = new List<int> { 0 };
        var count = new List<int> { 0 };
        tokens = new int[sorted.Length];
        var path = new List<int> { 0 };   // node per depth along the previous token
        byte[] previous = [];
        for (var t = 0; t < sorted.Length; t++)
        {
            var bytes = sorted[t].Bytes;
            var common = 0;
            while (common < bytes.Length && common < previous.Length && bytes[common] == previous[common]) common++;
            path.RemoveRange(common + 1, path.Count - common - 1);
            for (var d = common; d < bytes.Length; d++)
            {
                var parent = path[^1];
                var node = labels.Count;
                first.Add(-1); sibling.Add(-1); lastChild.Add(-1); labels.Add(bytes[d]); start.Add(0); count.Add(0);
                if (lastChild[parent] < 0) first[parent] = node; else sibling[lastChild[parent]] = node;
                lastChild[parent] = node;
                path.Add(node);
            }
            var end = path[^1];
            if (count[end] == 0) start[end] = t;
            count[end]++;
            tokens[t] = sorted[t].Id;
            previous = bytes;
        }
        firstChild = first.ToArray();
        nextSibling = sibling.ToArray();
        label = labels.ToArray();
        tokenStart = start.ToArray();
        tokenCount = count.ToArray();
    }

    public const int Root = 0;

    public int NodeCount => label.Length;

    public int FirstChild(int node) => firstChild[node];
    public int NextSibling(int node) => nextSibling[node];
    public byte Label(int node) => label[node];
    public ReadOnlySpan<int> TokensAt(int node) => tokens.AsSpan(tokenStart[node], tokenCount[node]);

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();
        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
