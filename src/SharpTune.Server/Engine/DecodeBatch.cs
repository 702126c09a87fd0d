using SharpTune.Generation;
using SharpTune.Generation.Constrained;
using SharpTune.Models;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Server.Engine;

/// <summary>
/// A batch of rows decoded together with one KV cache, advanced one token per <see cref="Step"/> so the engine can
/// admit new requests and drop cancelled rows between steps. After its first step (the prompt) a new batch is merged
/// into the running one by <see cref="Combine"/> (continuous batching), which also drops finished requests. Rows are left-padded as in
/// <see cref="TokenGenerator"/> (same positions and masks, so a lone request decodes exactly as the library does); each
/// request samples with its own settings and generator, and each row ends on its own (EOS, stop string, its own
/// max_tokens, or cancellation) without holding the others.
/// </summary>
internal sealed class DecodeBatch : IDisposable
{
    private sealed class Row(InferenceRequest request, int index, StreamingDecoder decoder, ITokenConstraint? constraint)
    {
        public InferenceRequest Request { get; } = request;
        public ITokenConstraint? Constraint { get; } = constraint;
        public int Index { get; } = index;
        public StreamingDecoder Decoder { get; } = decoder;
        public StopStringFilter Filter { get; } = new(request.Stops);
        public int Generated { get; set; }
        public bool Done { get; set; }
        /// <summary>The tokens generated so far, kept only when the request has presence, frequency or repetition penalties.</summary>
        public List<int>? Output { get; } = request.PresencePenalty != 0 || request.FrequencyPenalty != 0 || request.RepetitionPenalty != 1 ? [] : null;
    }

    private sealed class RequestSlot(InferenceRequest request, int firstRow, Generator? generator)
    {
        public InferenceRequest Request { get; } = request;
        public int FirstRow { get; } = firstRow;
        /// <summary>The request's own generator when it has a seed (it moves with the request when batches combine).</summary>
        public Generator? Generator { get; } = generator;
        public SamplingGroup Sampling { get; } = new(firstRow, request.Rows, request.Temperature, request.TopP, request.TopK, generator,
            request.PresencePenalty, request.FrequencyPenalty, request.LogitBias, request.RepetitionPenalty);
        public int RowsLeft { get; set; } = request.Rows;
    }

    private readonly CausalLanguageModel model;
    private readonly HashSet<int> eos;
    private readonly Row[] rows;
    private readonly RequestSlot[] slots;
    private readonly KvCache cache;
    private readonly BatchSampler sampler;
    private readonly long[,] ids;
    private readonly bool[,] real;
    private readonly PromptPrefixCache? prefixes;   // null: nothing is reused or kept
    private readonly object? modelState;            // the adapter the batch decodes with (null: the base), for the prefix cache
    private int length;   // columns filled so far
    private int start;    // first column not yet in the cache
    private bool prefilled;    // every prompt column but the pending last one is in the cache
    private bool handedOver;   // rows and generators moved into a combined batch

    private DecodeBatch(CausalLanguageModel model, HashSet<int> eos, Row[] rows, RequestSlot[] slots, KvCache cache,
        long[,] ids, bool[,] real, int length, int start, PromptPrefixCache? prefixes, object? modelState)
    {
        this.model = model;
        this.prefixes = prefixes;
        this.modelState = modelState;
        prefilled = true;
        this.eos = eos;
        this.rows = rows;
        this.slots = slots;
        this.cache = cache;
        this.ids = ids;
        this.real = real;
        this.length = length;
        this.start = start;
        sampler = NewSampler();
    }

    /// <param name="prefixes">
    /// Where prompts find keys and values computed before and leave theirs (and, when a row ends, its prompt and output's);
    /// null: none. Not used with prompt or prefix tuning (their virtual tokens come with the first pass), Phi-3's LongRoPE or
    /// dynamic-NTK RoPE (a pass's frequencies depend on its longest position, so a prefix computed in a shorter pass would
    /// differ from the same tokens computed with the rest) or prompt log-probabilities (they need every prompt token's pass).
    /// </param>
    /// <param name="modelState">The adapter the batch decodes with (null: the base model): entries are only shared within one.</param>
    public DecodeBatch(CausalLanguageModel model, HfTokenizer tokenizer, IReadOnlySet<int> eosIds, IReadOnlyList<InferenceRequest> requests,
        PromptPrefixCache? prefixes = null, object? modelState = null)
    {
        this.model = model;
        this.modelState = modelState;
        this.prefixes = model.ForwardAdapter is null && model.Config.RopeScaling is not { Type: "longrope" or "dynamic" } &&
            !requests.Any(r => r.PromptLogprobs) ? prefixes : null;
        eos = eosIds.ToHashSet();
        var rowList = new List<Row>();
        var slotList = new List<RequestSlot>();
        foreach (var request in requests)
        {
            // Seeded as TokenSampler seeds its generator, so a seeded request samples what the library would.
            var generator = request.Temperature > 0 && request.Seed is { } seed ? new Generator((ulong)seed, CPU) : null;
            slotList.Add(new RequestSlot(request, rowList.Count, generator));
            var vocabulary = request.Grammar is null ? null : TokenVocabulary.For(tokenizer, model.Config.VocabSize);
            for (var i = 0; i < request.Rows; i++)
                rowList.Add(new Row(request, i, request.ContinuesPrompt
                    ? tokenizer.CreateContinuationDecoder(request.PromptIds, request.SkipSpecialTokens)
                    : tokenizer.CreateStreamingDecoder(request.SkipSpecialTokens),
                    request.Grammar?.CreateConstraint(vocabulary!, eos)));
        }
        rows = rowList.ToArray();
        slots = slotList.ToArray();
        var promptLength = requests.Max(r => r.PromptIds.Count);
        var capacity = promptLength + requests.Max(r => r.MaxTokens);
        cache = new KvCache(model.Config, rows.Length, capacity, model.WeightDtype, model.Device);
        ids = new long[rows.Length, capacity];
        real = new bool[rows.Length, capacity];
        for (var r = 0; r < rows.Length; r++)
        {
            var prompt = rows[r].Request.PromptIds;
            var offset = promptLength - prompt.Count;
            for (var j = 0; j < prompt.Count; j++)
            {
                ids[r, offset + j] = prompt[j];
                real[r, offset + j] = true;
            }
        }
        length = promptLength;
        sampler = NewSampler();
        ReuseCachedPrefixes();
    }

    /// <summary>Prompt tokens this batch took from the prefix cache instead of computing them (all rows of a request counted once).</summary>
    public int ReusedPromptTokens { get; private set; }

    /// <summary>Whether this batch looks up and keeps prompt prefixes (false without a cache, or for what it does not serve).</summary>
    public bool UsesPrefixCache => prefixes is not null;

    /// <summary>
    /// Before the prompt's pass: each request's longest stored prefix (all but its last token at most) is copied into its
    /// rows' cache columns, and the pass starts at the first column some row still has to compute. Rows are left-padded,
    /// so a row whose prefix reaches further recomputes the difference; its keys and values come out as stored.
    /// </summary>
    private void ReuseCachedPrefixes()
    {
        if (prefixes is null) return;
        try
        {
            var found = slots.Select(s => prefixes.Lookup(modelState, s.Request.PromptIds, s.Request.PromptIds.Count - 1)).ToArray();
            var first = slots.Select((s, i) => length - s.Request.PromptIds.Count + found[i].Length).Min();
            if (first == 0) return;
            var (keys, values) = cache.AllLayers;
            for (var i = 0; i < slots.Length; i++)
            {
                var request = slots[i].Request;
                var offset = length - request.PromptIds.Count;
                var reused = first - offset;
                if (reused <= 0) continue;
                for (var r = slots[i].FirstRow; r < slots[i].FirstRow + request.Rows; r++)
                    PromptPrefixCache.CopyInto(found[i].Entry!, keys, values, r, offset, reused);
                request.CachedPromptTokens = reused;
                ReusedPromptTokens += reused;
            }
            cache.Advance(first);
            start = first;
            // Every prompt is in the cache but its last token: the batch stands as one does after its prompt's pass, that
            // token pending, so it can join a running batch at once and take its first token in the running batch's step.
            prefilled = start == length - 1;
        }
        catch (Exception)
        {
            // The cache only saves work: if a copy fails (memory), the prompt pass computes every column instead, over
            // whatever was copied, and the cache starts again empty.
            foreach (var slot in slots) slot.Request.CachedPromptTokens = 0;
            ReusedPromptTokens = 0;
            prefixes.Clear();
        }
    }

    private BatchSampler NewSampler() =>
        new(slots.Select(s => s.Sampling).ToArray(), rows.Length, model.Config.VocabSize, r => rows[r].Output ?? [], r => rows[r].Request.PromptIds);

    /// <summary>Rows in the batch, finished ones included (they occupy the cache until the batch ends).</summary>
    public int RowCount => rows.Length;

    /// <summary>Token columns the batch spans so far (its longest row, left padding included).</summary>
    public int Columns => length;

    /// <summary>Rows still decoding.</summary>
    public int LiveRows => rows.Count(r => !r.Done);

    /// <summary>
    /// True once the prompt has been through the model, or came whole from the prefix cache but its last token (the batch
    /// can then be combined with others; its pending column runs in the combined batch's next step).
    /// </summary>
    public bool Prefilled => prefilled;

    /// <summary>Rows of requests that have ended (they still occupy the cache until the batch is combined).</summary>
    public int FinishedRequestRows => slots.Where(s => s.RowsLeft == 0).Sum(s => s.Request.Rows);

    /// <summary>True once every row has ended.</summary>
    public bool Finished => rows.All(r => r.Done);

    /// <summary>Runs the model once (the whole prompt on the first step) and hands each live row its next token.</summary>
    public void Step()
    {
        DropCancelledRows();
        if (Finished) return;
        long[] next;
        TokenLogprob?[] logprobs;
        // As TokenGenerator decodes: inference mode, and libtorch narrowed to one thread while our kernels run a decode step.
        using (var inference = inference_mode())
        using (var threads = new DecodeThreads(model.Device, model.WeightDtype))
        using (var scope = NewDisposeScope())
        {
            var device = model.Device;
            var decoding = length - start == 1;
            var recomputing = decoding && LongRopeSwitches();
            if (recomputing)
            {
                // As TokenGenerator: the cached short-factor keys are dropped and every column runs again.
                cache.Rewind();
                start = 0;
                decoding = false;
            }
            if (decoding) threads.Narrow();
            var input = tensor(Slice(ids, start, length), device: device);                    // (B, T)
            var context = decoding ? DecodeContext(device) : PromptContext(device);
            var hidden = model.DecodeHidden(model.EmbedTokens(input), context);
            if (!prefilled && !recomputing) ReportPromptLogprobs(hidden);
            var logits = model.ComputeLogits(hidden.narrow(1, hidden.size(1) - 1, 1)).squeeze(1); // (B, V)
            next = sampler.Next(logits, AllowedMask(), group => slots[group].RowsLeft > 0);
            logprobs = new TokenLogprob?[rows.Length];
            foreach (var slot in slots)
            {
                if (slot.RowsLeft == 0 || slot.Request.TopLogprobs is not { } top) continue;
                var picked = next.AsSpan(slot.FirstRow, slot.Request.Rows).ToArray();
                Logprobs.Of(logits.narrow(0, slot.FirstRow, slot.Request.Rows), picked, top).CopyTo(logprobs, slot.FirstRow);
            }
        }
        start = length;
        if (!prefilled) KeepPrompts();
        prefilled = true;
        var pad = eos.Count > 0 ? eos.First() : 0;
        for (var r = 0; r < rows.Length; r++)
        {
            var row = rows[r];
            var token = row.Done ? pad : (int)next[r];
            ids[r, length] = token;
            real[r, length] = !row.Done;
            if (row.Done) continue;
            if (logprobs[r] is { } logprob && !eos.Contains(token)) row.Request.Events.Writer.TryWrite(new RowToken(row.Index, logprob));
            row.Output?.Add(token);
            sampler.Accept(r, token);
            Accept(row, token);
            if (row.Done && row.Index == 0) KeepSequence(r);
        }
        length++;
    }

    /// <summary>Right after the prompt's pass: each request's prompt goes into the prefix cache (requests arriving meanwhile can reuse it).</summary>
    private void KeepPrompts()
    {
        if (prefixes is null) return;
        var (keys, values) = cache.AllLayers;
        foreach (var slot in slots)
        {
            var prompt = slot.Request.PromptIds.ToArray();
            Keep(prompt, slot.FirstRow, length - prompt.Length, keys, values);
        }
    }

    /// <summary>Stores a sequence if it can: a failed copy (memory) empties the cache instead of failing the batch's rows.</summary>
    private void Keep(int[] tokens, int row, int column, Tensor keys, Tensor values)
    {
        try { prefixes!.Store(modelState, tokens, keys, values, row, column); }
        catch (Exception) { prefixes!.Clear(); }
    }

    /// <summary>
    /// When a request's first row ends: its prompt and output so far (all but the last token, whose keys were never
    /// computed) go into the prefix cache, so the conversation's next turn starts where this one ended.
    /// </summary>
    private void KeepSequence(int r)
    {
        if (prefixes is null) return;
        var first = FirstRealColumn(r);
        var tokens = new int[start - first];
        for (var c = first; c < start; c++) tokens[c - first] = (int)ids[r, c];
        var (keys, values) = cache.AllLayers;
        Keep(tokens, r, first, keys, values);
    }

    /// <summary>
    /// Whether this decode step is the first whose largest position reaches Phi-3's LongRoPE original context
    /// (<see cref="TokenGenerator.LongRopeSwitchesAt"/>); positions count real tokens, as <see cref="DecodeContext"/>'s.
    /// </summary>
    private bool LongRopeSwitches()
    {
        if (model.Config.RopeScaling is not { Type: "longrope" }) return false;
        var largest = 0L;
        for (var r = 0; r < rows.Length; r++)
        {
            var count = 0L;
            for (var c = 0; c < length; c++)
                if (real[r, c]) count++;
            largest = Math.Max(largest, count - 1);
        }
        return TokenGenerator.LongRopeSwitchesAt(model.Config, largest);
    }

    /// <summary>The whole prompt block (first step): positions count real tokens; causal mask hiding left padding.</summary>
    private ForwardContext PromptContext(Device device)
    {
        var isReal = tensor(Slice(real, 0, length), device: device);                          // (B, S)
        var positions = (isReal.to(ScalarType.Int64).cumsum(1) - 1).clamp_min(0).narrow(1, start, length - start);
        return new ForwardContext
        {
            PositionIds = positions,
            AttentionMask = AttentionMasks.CausalWithPadding(isReal, length - start),
            Cache = cache,
        };
    }

    /// <summary>
    /// One new token per row, built on the host from the token table: its position (real tokens before it) and, only
    /// when some key is padding or a finished row's filler, the (B, 1, 1, S) mask of visible keys — each query always
    /// sees itself, as in <see cref="AttentionMasks.CausalWithPadding"/>. A batch without hidden keys passes no mask,
    /// exactly as the library's unpadded decode does.
    /// </summary>
    private ForwardContext DecodeContext(Device device)
    {
        var batch = rows.Length;
        var positions = new long[batch];
        var visible = new bool[batch, length];
        var hidden = false;
        for (var r = 0; r < batch; r++)
        {
            var count = 0L;
            for (var c = 0; c < length; c++)
            {
                var see = real[r, c] || c == length - 1;
                visible[r, c] = see;
                hidden |= !see;
                if (real[r, c]) count++;
            }
            positions[r] = Math.Max(0, count - 1);
        }
        return new ForwardContext
        {
            PositionIds = tensor(positions, device: device).view(batch, 1),
            AttentionMask = hidden ? tensor(visible, device: device).view(batch, 1, 1, length) : null,
            Cache = cache,
            MaxPosition = positions.Max(),
        };
    }

    /// <summary>Ends every live row with <paramref name="error"/> (a failed forward pass).</summary>
    public void Fail(Exception error)
    {
        foreach (var slot in slots)
            if (slot.RowsLeft > 0)
            {
                slot.RowsLeft = 0;
                slot.Request.Events.Writer.TryComplete(error);
            }
        foreach (var row in rows) row.Done = true;
    }

    public void Dispose()
    {
        cache.Dispose();
        sampler.Dispose();
        if (!handedOver)
            foreach (var slot in slots) slot.Generator?.Dispose();
    }

    /// <summary>
    /// One batch holding the live requests of <paramref name="batches"/> (all prefilled, same model state): each row's
    /// cached keys/values and tokens are copied, left-padded to the longest, so every row continues exactly where it
    /// was (positions count real tokens only and padding is masked). Finished requests are dropped, and so are the
    /// leading columns no kept row uses (padding, or the tokens of requests that have left), so a batch that runs for
    /// as long as requests keep joining does not grow without bound. The inputs must be disposed afterwards; their rows
    /// and generators now belong to the result.
    /// </summary>
    public static DecodeBatch Combine(IReadOnlyList<DecodeBatch> batches)
    {
        var first = batches[0];
        var kept = batches.SelectMany(b => b.slots.Where(s => s.RowsLeft > 0).Select(s => (Batch: b, Slot: s))).ToList();
        // Per batch, the rows kept and the first column any of them uses; columns before it are dropped.
        var sources = kept.GroupBy(k => k.Batch).Select(g =>
        {
            var rowIndexes = g.SelectMany(k => Enumerable.Range(k.Slot.FirstRow, k.Slot.Request.Rows)).ToArray();
            var from = rowIndexes.Min(r => g.Key.FirstRealColumn(r));
            return (Batch: g.Key, Rows: rowIndexes, From: from);
        }).ToList();
        var cached = sources.Select(s => s.Batch.start - s.From).DefaultIfEmpty(0).Max();   // columns the new cache holds
        var remaining = kept.SelectMany(k => Enumerable.Range(k.Slot.FirstRow, k.Slot.Request.Rows)
            .Select(r => k.Slot.Request.MaxTokens - k.Batch.rows[r].Generated)).DefaultIfEmpty(1).Max();
        var capacity = cached + 1 + Math.Max(1, remaining);
        var rowCount = kept.Sum(k => k.Slot.Request.Rows);
        var ids = new long[rowCount, capacity];
        var real = new bool[rowCount, capacity];
        var rows = new List<Row>();
        var slots = new List<RequestSlot>();
        var cache = new KvCache(first.model.Config, Math.Max(1, rowCount), capacity, first.model.WeightDtype, first.model.Device);
        foreach (var (batch, rowIndexes, from) in sources)
        {
            var shift = cached - (batch.start - from);   // source column c lands at shift + c - from
            foreach (var slot in batch.slots.Where(s => s.RowsLeft > 0))
                slots.Add(new RequestSlot(slot.Request, rows.Count + Array.IndexOf(rowIndexes, slot.FirstRow), slot.Generator) { RowsLeft = slot.RowsLeft });
            foreach (var r in rowIndexes)
            {
                for (var c = from; c <= batch.start; c++)   // the cached columns and the pending (last sampled) one
                {
                    ids[rows.Count, shift + c - from] = batch.ids[r, c];
                    real[rows.Count, shift + c - from] = batch.real[r, c];
                }
                rows.Add(batch.rows[r]);
            }
        }
        if (rowCount > 0)
            using (var noGrad = no_grad())
            using (var scope = NewDisposeScope())
            {
                // Every layer at once: each batch's kept rows are one copy into the new buffers, shifted right so the
                // batches' cached columns end together (the columns before are left padding, zero and masked).
                var (keys, values) = cache.AllLayers;                                                // (L, B, nkv, capacity, hd)
                var row = 0;
                foreach (var (batch, rowIndexes, from) in sources)
                {
                    var (k, v) = batch.cache.AllLayers;
                    var width = batch.start - from;
                    var contiguous = rowIndexes[^1] - rowIndexes[0] == rowIndexes.Length - 1;
                    var index = contiguous ? null : tensor(rowIndexes.Select(r => (long)r).ToArray(), device: k.device);
                    Tensor KeptRows(Tensor buffer) =>
                        (index is null ? buffer.narrow(1, rowIndexes[0], rowIndexes.Length) : buffer.index_select(1, index)).narrow(3, from, width);
                    keys.narrow(1, row, rowIndexes.Length).narrow(3, cached - width, width).copy_(KeptRows(k));
                    values.narrow(1, row, rowIndexes.Length).narrow(3, cached - width, width).copy_(KeptRows(v));
                    row += rowIndexes.Length;
                }
            }
        cache.Advance(cached);
        foreach (var batch in batches) batch.handedOver = true;
        foreach (var batch in batches)
            foreach (var slot in batch.slots.Where(s => s.RowsLeft == 0)) slot.Generator?.Dispose();
        return new DecodeBatch(first.model, first.eos, rows.ToArray(), slots.ToArray(), cache, ids, real, cached + 1, cached, first.prefixes,
            first.modelState);
    }

    /// <summary>The first column holding one of row <paramref name="r"/>'s real tokens (its first prompt token).</summary>
    private int FirstRealColumn(int r)
    {
        var c = 0;
        while (c < start && !real[r, c]) c++;
        return c;
    }

    /// <summary>
    /// The (B, V) mask of tokens the rows' constraints allow, or null when no live request is constrained (rows without
    /// a constraint allow everything). Tokens left for a row bound what it may still open, so its output completes within
    /// max_tokens.
    /// </summary>
    private Tensor? AllowedMask()
    {
        if (!slots.Any(s => s.RowsLeft > 0 && s.Request.Grammar is not null)) return null;
        var width = model.Config.VocabSize;
        var mask = new bool[rows.Length * width];
        for (var r = 0; r < rows.Length; r++)
        {
            var row = rows[r];
            var span = mask.AsSpan(r * width, width);
            if (row.Done || row.Constraint is null) span.Fill(true);
            else row.Constraint.FillAllowed(span, row.Request.MaxTokens - row.Generated);
        }
        return tensor(mask, [rows.Length, width]);
    }

    /// <summary>On the prefill step: each request that asked for them gets its prompt tokens' log-probabilities (one event per request).</summary>
    private void ReportPromptLogprobs(Tensor hidden)
    {
        foreach (var slot in slots)
        {
            if (!slot.Request.PromptLogprobs || slot.RowsLeft == 0) continue;
            var prompt = slot.Request.PromptIds;
            var offset = length - prompt.Count;
            var rowHidden = hidden.narrow(0, slot.FirstRow, 1).narrow(1, offset, prompt.Count).squeeze(0);   // (P, D)
            var tokens = new TokenLogprob?[prompt.Count];
            if (prompt.Count > 1)
            {
                var logits = model.ComputeLogits(rowHidden.narrow(0, 0, prompt.Count - 1).unsqueeze(0)).squeeze(0);   // (P-1, V)
                var picked = prompt.Skip(1).Select(t => (long)t).ToArray();
                Logprobs.Of(logits, picked, slot.Request.TopLogprobs ?? 0).CopyTo(tokens, 1);
            }
            slot.Request.Events.Writer.TryWrite(new PromptLogprobs(tokens));
        }
    }

    private void Accept(Row row, int token)
    {
        row.Generated++;
        row.Constraint?.Accept(token);
        var writer = row.Request.Events.Writer;
        if (eos.Contains(token))
        {
            Finish(row, "stop", row.Filter.Flush() + row.Decoder.Flush());
            return;
        }
        var (emit, stopped) = row.Filter.Accept(row.Decoder.Push(token));
        if (emit.Length > 0) writer.TryWrite(new RowText(row.Index, emit));
        if (stopped) Finish(row, "stop", "");
        // A constrained output that is complete on its last allowed token is whole (the constraint keeps it within
        // max_tokens), not cut: "stop", so clients parse it (OpenAI's SDK refuses to parse a "length" reply).
        else if (row.Generated >= row.Request.MaxTokens)
            Finish(row, row.Constraint is { IsComplete: true } ? "stop" : "length", row.Filter.Flush() + row.Decoder.Flush());
    }

    private void Finish(Row row, string reason, string rest)
    {
        var writer = row.Request.Events.Writer;
        if (rest.Length > 0) writer.TryWrite(new RowText(row.Index, rest));
        writer.TryWrite(new RowFinished(row.Index, reason, row.Generated));
        row.Done = true;
        var slot = slots.First(s => ReferenceEquals(s.Request, row.Request));
        if (--slot.RowsLeft == 0) writer.TryComplete();
    }

    private void DropCancelledRows()
    {
        foreach (var slot in slots)
        {
            if (slot.RowsLeft == 0 || !slot.Request.Cancellation.IsCancellationRequested) continue;
            slot.RowsLeft = 0;
            for (var r = slot.FirstRow; r < slot.FirstRow + slot.Request.Rows; r++) rows[r].Done = true;
            slot.Request.Events.Writer.TryComplete(new OperationCanceledException(slot.Request.Cancellation));
        }
    }

    private static T[,] Slice<T>(T[,] source, int from, int to)
    {
        var count = source.GetLength(0);
        var result = new T[count, to - from];
        for (var r = 0; r < count; r++)
            for (var c = from; c < to; c++)
                result[r, c - from] = source[r, c];
        return result;
    }
}
