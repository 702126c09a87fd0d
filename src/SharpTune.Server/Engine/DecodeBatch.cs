using SharpTune.Generation;
using SharpTune.Models;
using SharpTune.Tokenization;
using static TorchSharp.torch;

namespace SharpTune.Server.Engine;

/// <summary>
/// A batch of rows decoded together with one KV cache, advanced one token per <see cref="Step"/> so the engine can
/// interleave batches, admit new requests and drop cancelled rows between steps. Rows are left-padded as in
/// <see cref="TokenGenerator"/> (same positions and masks, so a lone request decodes exactly as the library does); each
/// request samples with its own settings and generator, and each row ends on its own (EOS, stop string, its own
/// max_tokens, or cancellation) without holding the others.
/// </summary>
internal sealed class DecodeBatch : IDisposable
{
    private sealed class Row(InferenceRequest request, int index, StreamingDecoder decoder)
    {
        public InferenceRequest Request { get; } = request;
        public int Index { get; } = index;
        public StreamingDecoder Decoder { get; } = decoder;
        public StopStringFilter Filter { get; } = new(request.Stops);
        public int Generated { get; set; }
        public bool Done { get; set; }
    }

    private sealed class RequestSlot(InferenceRequest request, int firstRow, TokenSampler sampler)
    {
        public InferenceRequest Request { get; } = request;
        public int FirstRow { get; } = firstRow;
        public TokenSampler Sampler { get; } = sampler;
        public int RowsLeft { get; set; } = request.Rows;
    }

    private readonly CausalLanguageModel model;
    private readonly HashSet<int> eos;
    private readonly Row[] rows;
    private readonly RequestSlot[] slots;
    private readonly KvCache cache;
    private readonly long[,] ids;
    private readonly bool[,] real;
    private int length;   // columns filled so far
    private int start;    // first column not yet in the cache

    public DecodeBatch(CausalLanguageModel model, HfTokenizer tokenizer, IReadOnlySet<int> eosIds, IReadOnlyList<InferenceRequest> requests)
    {
        this.model = model;
        eos = eosIds.ToHashSet();
        var rowList = new List<Row>();
        var slotList = new List<RequestSlot>();
        foreach (var request in requests)
        {
            var options = new GenerationOptions { Temperature = request.Temperature, TopP = request.TopP, Seed = request.Seed };
            slotList.Add(new RequestSlot(request, rowList.Count, new TokenSampler(options)));
            for (var i = 0; i < request.Rows; i++)
                rowList.Add(new Row(request, i, tokenizer.CreateStreamingDecoder(skipSpecialTokens: true)));
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
    }

    /// <summary>Rows in the batch, finished ones included (they occupy the cache until the batch ends).</summary>
    public int RowCount => rows.Length;

    /// <summary>Rows still decoding.</summary>
    public int LiveRows => rows.Count(r => !r.Done);

    /// <summary>True once every row has ended.</summary>
    public bool Finished => rows.All(r => r.Done);

    /// <summary>Runs the model once (the whole prompt on the first step) and hands each live row its next token.</summary>
    public void Step()
    {
        DropCancelledRows();
        if (Finished) return;
        long[] next;
        using (var noGrad = no_grad())
        using (var scope = NewDisposeScope())
        {
            var device = model.Device;
            var input = tensor(Slice(ids, start, length), device: device);                    // (B, T)
            var isReal = tensor(Slice(real, 0, length), device: device);                      // (B, S)
            var positions = (isReal.to(ScalarType.Int64).cumsum(1) - 1).clamp_min(0).narrow(1, start, length - start);
            var context = new ForwardContext
            {
                PositionIds = positions,
                AttentionMask = AttentionMasks.CausalWithPadding(isReal, length - start),
                Cache = cache,
            };
            var hidden = model.DecodeHidden(model.EmbedTokens(input), context);
            var logits = model.ComputeLogits(hidden.narrow(1, hidden.shape[1] - 1, 1)).squeeze(1); // (B, V)
            next = new long[rows.Length];
            foreach (var slot in slots)
            {
                if (slot.RowsLeft == 0) continue;
                var picked = slot.Sampler.Next(logits.narrow(0, slot.FirstRow, slot.Request.Rows), null);
                Array.Copy(picked, 0, next, slot.FirstRow, picked.Length);
            }
        }
        start = length;
        var pad = eos.Count > 0 ? eos.First() : 0;
        for (var r = 0; r < rows.Length; r++)
        {
            var row = rows[r];
            var token = row.Done ? pad : (int)next[r];
            ids[r, length] = token;
            real[r, length] = !row.Done;
            if (!row.Done) Accept(row, token);
        }
        length++;
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
        foreach (var slot in slots) slot.Sampler.Dispose();
    }

    private void Accept(Row row, int token)
    {
        row.Generated++;
        var writer = row.Request.Events.Writer;
        if (eos.Contains(token))
        {
            Finish(row, "stop", row.Filter.Flush() + row.Decoder.Flush());
            return;
        }
        var (emit, stopped) = row.Filter.Accept(row.Decoder.Push(token));
        if (emit.Length > 0) writer.TryWrite(new RowText(row.Index, emit));
        if (stopped) Finish(row, "stop", "");
        else if (row.Generated >= row.Request.MaxTokens) Finish(row, "length", row.Filter.Flush() + row.Decoder.Flush());
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
