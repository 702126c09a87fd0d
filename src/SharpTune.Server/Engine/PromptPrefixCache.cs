using static TorchSharp.torch;

namespace SharpTune.Server.Engine;

/// <summary>
/// Keys and values of token sequences the engine has already run, kept after their requests end so that a later prompt
/// starting with the same tokens skips them (automatic prefix caching, as vLLM's and llama-server's prompt cache): a
/// shared system prompt is computed once, and each turn of a conversation only runs what the previous turn did not
/// (its reply, when the chat template renders it back as it was generated, and the new message). A token's key and value
/// depend only on the tokens before it and its position, and positions count real tokens from 0 in every batch, so a
/// stored prefix is the one a fresh prompt would compute. Entries belong to one model state (the base or one adapter);
/// the engine clears the cache whenever module surgery may change the weights. Used on the model thread only.
/// </summary>
internal sealed class PromptPrefixCache : IDisposable
{
    /// <summary>
    /// Most entries kept whatever their size: a lookup compares the prompt with every entry of its model state, and a
    /// small model's entries are small (stories260K: ~1.3 KB a token), so bytes alone would let the scan grow long.
    /// </summary>
    internal const int MaxEntries = 1024;

    private sealed class Entry(object? state, int[] tokens, Tensor keys, Tensor values) : IDisposable
    {
        public object? State { get; } = state;
        public int[] Tokens { get; } = tokens;
        /// <summary>(layers, nkv, tokens, hd), contiguous.</summary>
        public Tensor Keys { get; } = keys;
        public Tensor Values { get; } = values;
        public long Bytes { get; } = 2 * keys.NumberOfElements * keys.ElementSize;
        public long LastUsed { get; set; }

        public void Dispose()
        {
            Keys.Dispose();
            Values.Dispose();
        }
    }

    private readonly List<Entry> entries = [];
    private readonly long capacityBytes;
    private long bytes;
    private long clock;

    /// <param name="capacityBytes">Most bytes of keys and values kept; the least recently used entries leave first.</param>
    public PromptPrefixCache(long capacityBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacityBytes);
        this.capacityBytes = capacityBytes;
    }

    /// <summary>Bytes of keys and values held now.</summary>
    public long Bytes => bytes;

    /// <summary>Entries held now.</summary>
    public int Count => entries.Count;

    /// <summary>
    /// How many leading tokens of <paramref name="prompt"/> a stored entry of <paramref name="state"/> holds, at most
    /// <paramref name="limit"/> (the prompt's last token always runs, for its logits), and that entry; 0 and null when none.
    /// </summary>
    public (int Length, object? Entry) Lookup(object? state, IReadOnlyList<int> prompt, int limit)
    {
        Entry? best = null;
        var longest = 0;
        foreach (var entry in entries)
        {
            if (!ReferenceEquals(entry.State, state)) continue;
            var common = CommonPrefix(entry.Tokens, prompt, Math.Min(limit, entry.Tokens.Length));
            if (common > longest) (best, longest) = (entry, common);
        }
        if (best is not null) best.LastUsed = ++clock;
        return (longest, best);
    }

    /// <summary>
    /// Copies the first <paramref name="length"/> positions of a looked-up <paramref name="entry"/> into every layer of a
    /// batch's cache buffers (<see cref="SharpTune.Models.KvCache.AllLayers"/>: (layers, B, nkv, capacity, hd)), row
    /// <paramref name="row"/>, from column <paramref name="column"/> on.
    /// </summary>
    public static void CopyInto(object entry, Tensor keys, Tensor values, int row, int column, int length)
    {
        var stored = (Entry)entry;
        using var scope = NewDisposeScope();
        keys.narrow(1, row, 1).narrow(3, column, length).copy_(stored.Keys.narrow(2, 0, length).unsqueeze(1));
        values.narrow(1, row, 1).narrow(3, column, length).copy_(stored.Values.narrow(2, 0, length).unsqueeze(1));
    }

    /// <summary>
    /// Keeps the keys and values of <paramref name="ids"/>, read from a batch's cache buffers (row <paramref name="row"/>,
    /// columns from <paramref name="column"/> on). An entry that already starts with all of them is only marked used; entries
    /// that are prefixes of the new one are replaced by it. Then the least recently used entries leave until the cache fits.
    /// </summary>
    public void Store(object? state, int[] ids, Tensor keys, Tensor values, int row, int column)
    {
        var count = ids.Length;
        if (count == 0) return;
        foreach (var entry in entries)
            if (ReferenceEquals(entry.State, state) && entry.Tokens.Length >= count && CommonPrefix(entry.Tokens, ids, count) == count)
            {
                entry.LastUsed = ++clock;
                return;
            }
        var perToken = 2 * keys.NumberOfElements / keys.size(1) / keys.size(3) * keys.ElementSize;
        if (perToken * count > capacityBytes) return;
        for (var i = entries.Count - 1; i >= 0; i--)
            if (ReferenceEquals(entries[i].State, state) && entries[i].Tokens.Length < count &&
                CommonPrefix(entries[i].Tokens, ids, entries[i].Tokens.Length) == entries[i].Tokens.Length)
                Remove(i);
        Tensor Copy(Tensor buffer)
        {
            var slice = buffer.narrow(1, row, 1).narrow(3, column, count).squeeze(1);   // (layers, nkv, count, hd), strided
            return empty(slice.shape, slice.dtype, slice.device).copy_(slice).DetachFromDisposeScope();
        }
        Tensor storedKeys, storedValues;
        using (var noGrad = no_grad())
        using (var scope = NewDisposeScope())
            (storedKeys, storedValues) = (Copy(keys), Copy(values));
        var added = new Entry(state, ids, storedKeys, storedValues) { LastUsed = ++clock };
        entries.Add(added);
        bytes += added.Bytes;
        while (bytes > capacityBytes || entries.Count > MaxEntries)
        {
            var oldest = 0;
            for (var i = 1; i < entries.Count; i++)
                if (entries[i].LastUsed < entries[oldest].LastUsed) oldest = i;
            Remove(oldest);
        }
    }

    /// <summary>Forgets every entry (the weights they were computed with may change).</summary>
    public void Clear()
    {
        foreach (var entry in entries) entry.Dispose();
        entries.Clear();
        bytes = 0;
    }

    public void Dispose() => Clear();

    private void Remove(int index)
    {
        bytes -= entries[index].Bytes;
        entries[index].Dispose();
        entries.RemoveAt(index);
    }

    private static int CommonPrefix(int[] stored, IReadOnlyList<int> prompt, int limit)
    {
        var end = Math.Min(limit, prompt.Count);
        var i = 0;
        while (i < end && stored[i] == prompt[i]) i++;
        return i;
    }
}
