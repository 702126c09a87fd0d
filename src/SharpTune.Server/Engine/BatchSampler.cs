using static TorchSharp.torch;

namespace SharpTune.Server.Engine;

/// <summary>One request's rows in a batch and how they sample (OpenAI's temperature and top_p, the model's top_k, seed).</summary>
/// <param name="FirstRow">The request's first row in the batch; its rows are consecutive.</param>
/// <param name="Rows">How many rows (OpenAI's <c>n</c>).</param>
/// <param name="Generator">The request's own seeded generator, or null: unseeded requests draw from the batch's.</param>
internal sealed record SamplingGroup(int FirstRow, int Rows, double Temperature, double TopP, int TopK, Generator? Generator)
{
    public bool IsGreedy => Temperature <= 0;
}

/// <summary>
/// Picks the next token of every row of a batch in one pass over the (B, V) logits, each request with its own settings:
/// per-row temperature, top-k and top-p thresholds are columns of tensors built once per batch, and the multinomial draw
/// is the exponential race torch's <c>multinomial</c> runs for one sample (argmax of p / q with q ~ Exp(1), vLLM does
/// the same): only the noise is drawn per request, from the request's own generator when it has a seed. So a seeded
/// request gets exactly the tokens <see cref="SharpTune.Generation.TokenSampler"/> gives it alone, whatever shares its
/// batch, and the batch costs a fixed number of operations instead of half a dozen per request. Unseeded rows, which
/// need no particular random stream, draw by inverting their cumulative distribution with one uniform number each: the
/// same distribution, without the race's exponential per vocabulary entry (libm's log1p on every one: a tenth of the
/// model thread at 8 streams on stories260K).
/// </summary>
internal sealed class BatchSampler : IDisposable
{
    private readonly IReadOnlyList<SamplingGroup> groups;
    private readonly bool anyGreedy, anySampled;
    private readonly Tensor? temperatures;    // (B, 1): 1 for greedy rows (their pick is the argmax)
    private readonly Tensor? topK;            // (B, 1) int64 index of each row's k-th value; null when no row uses top-k
    private readonly Tensor? usesTopK;        // (B, 1) bool: rows with top-k
    private readonly int maxTopK;
    private readonly Tensor? topP;            // (B, 1): +inf for rows without top-p; null when no row uses it
    private readonly Tensor? greedyRows;      // (B) bool, when greedy and sampled rows are mixed
    private readonly Tensor? seededRows;      // (B) bool, when seeded and unseeded sampled rows are mixed
    private readonly Tensor? noise;           // (B, V) Exp(1) draws for the seeded rows, refilled every step
    private readonly Generator? shared;       // uniform draws for unseeded requests
    private readonly int batch;

    public BatchSampler(IReadOnlyList<SamplingGroup> groups, int batch, int vocabulary)
    {
        this.groups = groups;
        this.batch = batch;
        anyGreedy = groups.Any(g => g.IsGreedy);
        anySampled = groups.Any(g => !g.IsGreedy);
        if (!anySampled) return;
        var temperature = new float[batch];
        var kIndex = new long[batch];
        var withTopK = new bool[batch];
        var p = new float[batch];
        var greedy = new bool[batch];
        Array.Fill(temperature, 1f);
        Array.Fill(p, float.PositiveInfinity);
        foreach (var group in groups)
            for (var r = group.FirstRow; r < group.FirstRow + group.Rows; r++)
            {
                greedy[r] = group.IsGreedy;
                if (group.IsGreedy) continue;
                temperature[r] = (float)group.Temperature;
                if (group.TopK > 0 && group.TopK < vocabulary)
                {
                    kIndex[r] = group.TopK - 1;
                    withTopK[r] = true;
                    maxTopK = Math.Max(maxTopK, group.TopK);
                }
                if (group.TopP < 1.0) p[r] = (float)group.TopP;
            }
        temperatures = tensor(temperature, [batch, 1]).DetachFromDisposeScope();
        if (maxTopK > 0)
        {
            topK = tensor(kIndex, [batch, 1]).DetachFromDisposeScope();
            usesTopK = tensor(withTopK, [batch, 1]).DetachFromDisposeScope();
        }
        if (p.Any(float.IsFinite)) topP = tensor(p, [batch, 1]).DetachFromDisposeScope();
        if (anyGreedy) greedyRows = tensor(greedy).DetachFromDisposeScope();
        var anySeeded = groups.Any(g => !g.IsGreedy && g.Generator is not null);
        var anyUnseeded = groups.Any(g => !g.IsGreedy && g.Generator is null);
        if (anySeeded) noise = ones(batch, vocabulary).DetachFromDisposeScope();
        if (anyUnseeded) shared = new Generator((ulong)Random.Shared.NextInt64(), CPU);
        if (anySeeded && anyUnseeded)
        {
            var seeded = new bool[batch];
            foreach (var group in groups.Where(g => !g.IsGreedy && g.Generator is not null))
                Array.Fill(seeded, true, group.FirstRow, group.Rows);
            seededRows = tensor(seeded).DetachFromDisposeScope();
        }
    }

    /// <summary>
    /// The next token of every row. <paramref name="logits"/> (B, V) in any dtype; <paramref name="allowed"/> (B, V) bool
    /// is the constrained-decoding mask, or null; <paramref name="live"/> says which groups still decode (the others'
    /// rows get an arbitrary token and their generators are left alone), by index in the groups given at construction.
    /// </summary>
    public long[] Next(Tensor logits, Tensor? allowed, Func<int, bool> live)
    {
        using var scope = NewDisposeScope();
        if (!anySampled && allowed is null)
            return logits.argmax(-1).cpu().data<long>().ToArray();
        var x = logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
        if (x.device_type != TorchSharp.DeviceType.CPU) x = x.cpu();
        if (allowed is not null) x = x.masked_fill(allowed.cpu().logical_not(), double.NegativeInfinity);
        if (!anySampled) return x.argmax(-1).data<long>().ToArray();
        var greedyPick = anyGreedy ? x.argmax(-1) : null;

        // The steps of TokenSampler, every row at once; a row without top-k / top-p is left as it is.
        x = x / temperatures!;
        if (topK is not null)
        {
            var kth = x.topk(maxTopK, dim: -1).values.gather(1, topK);                          // (B, 1)
            x = x.masked_fill((x < kth).logical_and(usesTopK!), double.NegativeInfinity);
        }
        if (topP is not null)
        {
            var (sorted, indices) = x.sort(-1, descending: true);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            var remove = (cumulative - sorted.softmax(-1)) > topP;   // keep the token that crosses p
            var removeInOriginalOrder = zeros_like(remove).scatter(1, indices, remove);
            x = x.masked_fill(removeInOriginalOrder, double.NegativeInfinity);
        }
        var probs = x.softmax(-1);
        Tensor? racePick = null, inversePick = null;
        if (noise is not null)
        {
            for (var g = 0; g < groups.Count; g++)
                if (groups[g] is { Generator: { } own } group && !group.IsGreedy && live(g))
                    noise.narrow(0, group.FirstRow, group.Rows).exponential_(1, own);
            racePick = (probs / noise).argmax(-1);
        }
        if (shared is not null)
        {
            // The first token whose cumulative probability exceeds u·total: tokens of probability 0 are never picked.
            var cumulative = probs.cumsum(-1);                                                     // (B, V)
            var last = cumulative.size(1) - 1;
            var u = rand([batch, 1], generator: shared) * cumulative.narrow(1, last, 1);
            inversePick = searchsorted(cumulative, u, right: true).squeeze(1).clamp_max(last);
        }
        var picked = racePick is not null && inversePick is not null ? where(seededRows!, racePick, inversePick) : (racePick ?? inversePick)!;
        if (greedyPick is not null) picked = where(greedyRows!, greedyPick, picked);
        return picked.data<long>().ToArray();
    }

    public void Dispose()
    {
        temperatures?.Dispose();
        topK?.Dispose();
        usesTopK?.Dispose();
        topP?.Dispose();
        greedyRows?.Dispose();
        seededRows?.Dispose();
        noise?.Dispose();
        shared?.Dispose();
    }
}
