using static TorchSharp.torch;

namespace SharpTune.Server.Engine;

/// <summary>
/// One request's rows in a batch and how they sample (OpenAI's temperature, top_p, presence_penalty, frequency_penalty
/// and logit_bias, vLLM's repetition_penalty, the model's top_k, seed).
/// </summary>
/// <param name="FirstRow">The request's first row in the batch; its rows are consecutive.</param>
/// <param name="Rows">How many rows (OpenAI's <c>n</c>).</param>
/// <param name="Generator">The request's own seeded generator, or null: unseeded requests draw from the batch's.</param>
/// <param name="PresencePenalty">Subtracted once from the logit of every token the row has already generated.</param>
/// <param name="FrequencyPenalty">Subtracted from a token's logit once per time the row has generated it.</param>
/// <param name="LogitBias">Added to the logits of these token ids, or null.</param>
/// <param name="RepetitionPenalty">CTRL's penalty on every token of the prompt or the output (1 = off).</param>
internal sealed record SamplingGroup(int FirstRow, int Rows, double Temperature, double TopP, int TopK, Generator? Generator,
    double PresencePenalty = 0, double FrequencyPenalty = 0, IReadOnlyDictionary<int, double>? LogitBias = null,
    double RepetitionPenalty = 1)
{
    /// <summary>vLLM's rule (<c>_SAMPLING_EPS</c> in its sampler): a temperature below 1e-5 is greedy, not a division by it.</summary>
    public bool IsGreedy => Temperature < GreedyBelow;

    public const double GreedyBelow = 1e-5;

    public bool HasPenalties => PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1;
}

/// <summary>
/// Picks the next token of every row of a batch in one pass over the (B, V) logits, each request with its own settings,
/// in vLLM's order: the constrained-decoding mask, logit_bias, the repetition penalty (prompt and output tokens), the
/// frequency and presence penalties (over the tokens the row has generated, never the prompt), the greedy pick, then temperature, top-k and top-p. Per-row settings are columns of
/// tensors built once per batch, and the multinomial draw is the exponential race torch's <c>multinomial</c> runs for
/// one sample (argmax of p / q with q ~ Exp(1), vLLM does the same): only the noise is drawn per request, from the
/// request's own generator when it has a seed. So a seeded request without penalties or bias gets exactly the tokens
/// <see cref="SharpTune.Generation.TokenSampler"/> gives it alone, whatever shares its batch, and the batch costs a fixed
/// number of operations instead of half a dozen per request. Unseeded rows, which need no particular random stream, draw
/// by inverting their cumulative distribution with one uniform number each: the same distribution, without the race's
/// exponential per vocabulary entry (libm's log1p on every one: a tenth of the model thread at 8 streams on stories260K).
/// </summary>
internal sealed class BatchSampler : IDisposable
{
    private readonly IReadOnlyList<SamplingGroup> groups;
    private readonly bool anyGreedy, anySampled;
    private readonly Tensor? temperatures;    // (B, 1): 1 for greedy rows (their pick is the argmax)
    private readonly Tensor? topK;            // (B, 1) int64 index of each row's k-th value; null when no row uses top-k
    private readonly Tensor? usesTopK;        // (B, 1) bool: rows with top-k
    private readonly Tensor? kthFromBottom;   // (B, 1) int64 V − k (0 for rows without top-k), for top-k with top-p
    private readonly int maxTopK;
    private readonly Tensor? topPDropUpTo;    // (B, 1): 1 − top_p, −inf for rows without top-p; null when no row uses it
    private readonly Tensor? logitBias;       // (B, V) added to the logits; null when no request has a logit_bias
    private readonly Tensor? frequency;       // (B, 1) frequency penalties; null when no request has a penalty
    private readonly Tensor? presence;        // (B, 1) presence penalties
    private readonly Tensor? repetition;      // (B, 1) repetition penalties (1 = off)
    private readonly Tensor? inPrompt;        // (B, V) bool: tokens of each row's prompt
    private readonly Tensor? outputCounts;    // (B, V) fp32: how often each row has generated each token
    private readonly Tensor? greedyRows;      // (B) bool, when greedy and sampled rows are mixed
    private readonly Tensor? seededRows;      // (B) bool, when seeded and unseeded sampled rows are mixed
    private readonly Tensor? noise;           // (B, V) Exp(1) draws for the seeded rows, refilled every step
    private readonly Generator? shared;       // uniform draws for unseeded requests
    private readonly int batch;

    /// <param name="outputs">The tokens each row has generated so far (a batch built by combining others carries on
    /// their penalties); null when no row has any.</param>
    /// <param name="prompts">Each row's prompt tokens, for the repetition penalty; null when no row has one.</param>
    public BatchSampler(IReadOnlyList<SamplingGroup> groups, int batch, int vocabulary, Func<int, IReadOnlyList<int>>? outputs = null,
        Func<int, IReadOnlyList<int>>? prompts = null)
    {
        this.groups = groups;
        this.batch = batch;
        anyGreedy = groups.Any(g => g.IsGreedy);
        anySampled = groups.Any(g => !g.IsGreedy);
        if (groups.Any(g => g.LogitBias is { Count: > 0 }))
        {
            var bias = new float[batch * vocabulary];
            foreach (var group in groups.Where(g => g.LogitBias is { Count: > 0 }))
                for (var r = group.FirstRow; r < group.FirstRow + group.Rows; r++)
                    foreach (var (token, value) in group.LogitBias!)
                        bias[r * vocabulary + token] = (float)value;
            logitBias = tensor(bias, [batch, vocabulary]).DetachFromDisposeScope();
        }
        if (groups.Any(g => g.HasPenalties))
        {
            var (f, p, rp) = (new float[batch], new float[batch], new float[batch]);
            Array.Fill(rp, 1f);
            var counts = new float[batch * vocabulary];
            var prompt = new bool[batch * vocabulary];
            foreach (var group in groups.Where(g => g.HasPenalties))
                for (var r = group.FirstRow; r < group.FirstRow + group.Rows; r++)
                {
                    (f[r], p[r], rp[r]) = ((float)group.FrequencyPenalty, (float)group.PresencePenalty, (float)group.RepetitionPenalty);
                    foreach (var token in outputs?.Invoke(r) ?? []) counts[r * vocabulary + token]++;
                    if (group.RepetitionPenalty != 1)
                        foreach (var token in prompts?.Invoke(r) ?? []) prompt[r * vocabulary + token] = true;
                }
            frequency = tensor(f, [batch, 1]).DetachFromDisposeScope();
            presence = tensor(p, [batch, 1]).DetachFromDisposeScope();
            outputCounts = tensor(counts, [batch, vocabulary]).DetachFromDisposeScope();
            if (groups.Any(g => g.RepetitionPenalty != 1))
            {
                repetition = tensor(rp, [batch, 1]).DetachFromDisposeScope();
                inPrompt = tensor(prompt, [batch, vocabulary]).DetachFromDisposeScope();
            }
        }
        if (!anySampled) return;
        var temperature = new float[batch];
        var kIndex = new long[batch];
        var kFromBottom = new long[batch];
        var withTopK = new bool[batch];
        var dropUpTo = new float[batch];
        var greedy = new bool[batch];
        Array.Fill(temperature, 1f);
        Array.Fill(dropUpTo, float.NegativeInfinity);
        foreach (var group in groups)
            for (var r = group.FirstRow; r < group.FirstRow + group.Rows; r++)
            {
                greedy[r] = group.IsGreedy;
                if (group.IsGreedy) continue;
                temperature[r] = (float)group.Temperature;
                if (group.TopK > 0 && group.TopK < vocabulary)
                {
                    kIndex[r] = group.TopK - 1;
                    kFromBottom[r] = vocabulary - group.TopK;
                    withTopK[r] = true;
                    maxTopK = Math.Max(maxTopK, group.TopK);
                }
                // vLLM: 1 - p with p an fp32 tensor, so the threshold is computed in fp32.
                if (group.TopP < 1.0) dropUpTo[r] = 1f - (float)group.TopP;
            }
        temperatures = tensor(temperature, [batch, 1]).DetachFromDisposeScope();
        if (maxTopK > 0)
        {
            topK = tensor(kIndex, [batch, 1]).DetachFromDisposeScope();
            usesTopK = tensor(withTopK, [batch, 1]).DetachFromDisposeScope();
            kthFromBottom = tensor(kFromBottom, [batch, 1]).DetachFromDisposeScope();
        }
        if (dropUpTo.Any(float.IsFinite)) topPDropUpTo = tensor(dropUpTo, [batch, 1]).DetachFromDisposeScope();
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
    /// Call <see cref="Accept"/> with each live row's token before the next step when any request has penalties.
    /// </summary>
    public long[] Next(Tensor logits, Tensor? allowed, Func<int, bool> live)
    {
        using var scope = NewDisposeScope();
        if (!anySampled && allowed is null && logitBias is null && outputCounts is null)
            return logits.argmax(-1).cpu().data<long>().ToArray();
        var x = Penalised(logits, allowed);
        if (!anySampled) return x.argmax(-1).data<long>().ToArray();
        var greedyPick = anyGreedy ? x.argmax(-1) : null;
        var probs = Filtered(x).softmax(-1);
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

    /// <summary>Counts <paramref name="token"/> as generated by <paramref name="row"/> (for the penalties).</summary>
    public void Accept(int row, int token)
    {
        if (outputCounts is null || frequency is null) return;
        using var scope = NewDisposeScope();
        outputCounts[row, token].add_(1);
    }

    /// <summary>
    /// The distribution each row samples from, as logits (−∞ for tokens removed): the same steps as
    /// <see cref="Next"/>, greedy rows included at temperature 1 (their pick is the argmax before temperature).
    /// </summary>
    internal Tensor Process(Tensor logits, Tensor? allowed)
    {
        var x = Penalised(logits, allowed);
        return anySampled ? Filtered(x) : x;
    }

    /// <summary>
    /// fp32 CPU logits with the steps that can change a greedy pick, as vLLM's <c>Sampler.apply_logits_processors</c>
    /// runs them: the allowed-token mask, logit_bias, then <c>apply_penalties</c>: the repetition penalty on tokens of
    /// the prompt or the output (a positive logit times 1/penalty, any other times the penalty), then OpenAI's
    /// penalties, logits −= frequency·count and −= presence·[count > 0].
    /// </summary>
    private Tensor Penalised(Tensor logits, Tensor? allowed)
    {
        var x = logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
        if (x.device_type != TorchSharp.DeviceType.CPU) x = x.cpu();
        if (allowed is not null) x = x.masked_fill(allowed.cpu().logical_not(), double.NegativeInfinity);
        if (logitBias is not null) x = x + logitBias;
        if (outputCounts is not null)
        {
            if (repetition is not null)
            {
                var penalties = where(inPrompt!.logical_or(outputCounts > 0), repetition.expand(x.shape), ones_like(x));
                x = where(x > 0, x / penalties, x * penalties);   // vLLM divides, so no reciprocal's rounding
            }
            x = SharpTune.Generation.LogitFilters.OutputPenalties(x, outputCounts, frequency!, presence!);
        }
        return x;
    }

    /// <summary>
    /// Temperature, then top-k and top-p as vLLM's <c>apply_top_k_top_p</c> does them: with a top-p in the batch, both in
    /// one sort; top-k alone without sorting (<c>apply_top_k_only</c>). A row without them is left as it is.
    /// </summary>
    private Tensor Filtered(Tensor x)
    {
        x = x / temperatures!;
        if (topPDropUpTo is not null) return SharpTune.Generation.LogitFilters.TopKTopP(x, kthFromBottom, topPDropUpTo);
        if (topK is not null)
        {
            var kth = x.topk(maxTopK, dim: -1).values.gather(1, topK);                          // (B, 1); ties with it stay
            x = x.masked_fill((x < kth).logical_and(usesTopK!), double.NegativeInfinity);
        }
        return x;
    }

    public void Dispose()
    {
        temperatures?.Dispose();
        topK?.Dispose();
        usesTopK?.Dispose();
        kthFromBottom?.Dispose();
        topPDropUpTo?.Dispose();
        logitBias?.Dispose();
        frequency?.Dispose();
        presence?.Dispose();
        outputCounts?.Dispose();
        repetition?.Dispose();
        inPrompt?.Dispose();
        greedyRows?.Dispose();
        seededRows?.Dispose();
        noise?.Dispose();
        shared?.Dispose();
    }
}
