using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>
/// Picks the next token per row from last-position logits: repetition penalty, temperature, top-k, top-p, then a
/// seeded multinomial draw — the order transformers' logits processors use. Greedy is a plain argmax.
/// </summary>
public sealed class TokenSampler : IDisposable
{
    private readonly GenerationOptions options;
    private readonly Generator? generator;
    private Tensor? logitBias;   // (V), when options.LogitBias is set

    public TokenSampler(GenerationOptions options)
    {
        this.options = options;
        if (!options.IsGreedy)
            generator = new Generator((ulong)(options.Seed ?? Random.Shared.NextInt64()), CPU);
    }

    /// <summary>
    /// logits (B, V) in any dtype; seen (B, V) bool marks tokens already present (for the repetition penalty); allowed
    /// (B, V) bool, when given, is the constrained-decoding mask: other tokens are never picked; outputCounts (B, V) fp32,
    /// how often each row has generated each token, for the presence and frequency penalties.
    /// </summary>
    public long[] Next(Tensor logits, Tensor? seen, Tensor? allowed = null, Tensor? outputCounts = null)
    {
        using var scope = NewDisposeScope();
        // Plain greedy: the argmax where the logits are (every dtype orders them the same), one id per row to read back.
        if (options.IsGreedy && allowed is null && (options.RepetitionPenalty == 1.0 || seen is null) &&
            options.LogitBias is not { Count: > 0 } && (!options.PenalisesOutput || outputCounts is null))
            return GreedyArgmax.TryPick(logits) ?? logits.argmax(-1).cpu().data<long>().ToArray();
        var x = Process(logits, seen, allowed, outputCounts);
        if (options.IsGreedy)
            return GreedyArgmax.TryPick(x) ?? x.argmax(-1).data<long>().ToArray();
        return Draw(x.softmax(-1));
    }

    /// <summary>Each row's probabilities (fp32 CPU) after <see cref="Process"/>'s processors: what a sampled token is drawn from.</summary>
    internal Tensor ProbabilityRows(Tensor logits, Tensor? seen, Tensor? outputCounts) => Process(logits, seen, null, outputCounts).softmax(-1);

    /// <summary>One draw per row of non-negative weights (B, V), from this sampler's seeded generator.</summary>
    internal long[] Draw(Tensor weights)
    {
        using var scope = NewDisposeScope();
        return multinomial(weights, 1, false, generator).squeeze(1).data<long>().ToArray();
    }

    /// <summary>Uniform fp32 draws in [0, 1) from this sampler's seeded generator (transformers' <c>torch.rand_like</c>).</summary>
    internal float[] Uniform(int count)
    {
        using var scope = NewDisposeScope();
        return rand(count, generator: generator).data<float>().ToArray();
    }

    /// <summary>
    /// The fp32 CPU logits the pick is made from: the constrained-decoding mask, logit_bias, the repetition penalty (on
    /// the raw logits, once per token seen, as transformers' processor), the presence and frequency penalties (as vLLM
    /// applies OpenAI's, which transformers lacks), then, when sampling, temperature, top-k and top-p in transformers'
    /// order; removed tokens are −∞. Greedy decoding stops after the penalties (temperature never changes an argmax).
    /// </summary>
    internal Tensor Process(Tensor logits, Tensor? seen, Tensor? allowed, Tensor? outputCounts = null)
    {
        var x = logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
        if (x.device_type != TorchSharp.DeviceType.CPU) x = x.cpu();
        if (allowed is not null) x = x.masked_fill(allowed.cpu().logical_not(), double.NegativeInfinity);
        if (options.LogitBias is { Count: > 0 } bias) x = x + LogitBiasRow(bias, (int)x.size(1));
        if (options.RepetitionPenalty != 1.0 && seen is not null)
        {
            // RepetitionPenaltyLogitsProcessor: a negative logit is multiplied by the penalty, any other divided by it.
            var penalised = where(x < 0, x * options.RepetitionPenalty, x / options.RepetitionPenalty);
            x = where(seen.cpu(), penalised, x);
        }
        if (options.PenalisesOutput && outputCounts is not null)
            x = LogitFilters.OutputPenalties(x, outputCounts.cpu(), tensor((float)options.FrequencyPenalty), tensor((float)options.PresencePenalty));
        if (options.IsGreedy) return x;

        x = x / options.Temperature;
        if (options.TopK > 0 && options.TopK < x.size(1))
        {
            var kth = x.topk(options.TopK, dim: -1).values.narrow(1, options.TopK - 1, 1);   // (B, 1); ties with it stay
            x = x.masked_fill(x < kth, double.NegativeInfinity);
        }
        if (options.TopP < 1.0)
        {
            // transformers compares the fp32 cumulative sums with the Python float 1 - top_p, which torch rounds to fp32.
            x = LogitFilters.TopP(x, tensor((float)(1.0 - options.TopP)));
        }
        return x;
    }

    /// <summary>The logit_bias as one (V) row, built on first use.</summary>
    private Tensor LogitBiasRow(IReadOnlyDictionary<int, double> bias, int vocabulary)
    {
        if (logitBias is null)
        {
            var row = new float[vocabulary];
            foreach (var (token, value) in bias)
                row[token < vocabulary ? token : throw new ArgumentException(
                    $"logit_bias holds token id {token}, outside the model's vocabulary (0–{vocabulary - 1})")] = (float)value;
            logitBias = tensor(row).DetachFromDisposeScope();
        }
        return logitBias;
    }

    public void Dispose()
    {
        generator?.Dispose();
        logitBias?.Dispose();
    }
}
