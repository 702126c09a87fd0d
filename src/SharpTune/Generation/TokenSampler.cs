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

    public TokenSampler(GenerationOptions options)
    {
        this.options = options;
        if (!options.IsGreedy)
            generator = new Generator((ulong)(options.Seed ?? Random.Shared.NextInt64()), CPU);
    }

    /// <summary>
    /// logits (B, V) in any dtype; seen (B, V) bool marks tokens already present (for the penalty); allowed (B, V) bool,
    /// when given, is the constrained-decoding mask: other tokens are never picked.
    /// </summary>
    public long[] Next(Tensor logits, Tensor? seen, Tensor? allowed = null)
    {
        using var scope = NewDisposeScope();
        // Plain greedy: the argmax where the logits are (every dtype orders them the same), one id per row to read back.
        if (options.IsGreedy && allowed is null && (options.RepetitionPenalty == 1.0 || seen is null))
            return GreedyArgmax.TryPick(logits) ?? logits.argmax(-1).cpu().data<long>().ToArray();
        var x = logits.dtype == ScalarType.Float32 ? logits : logits.to(ScalarType.Float32);
        if (x.device_type != TorchSharp.DeviceType.CPU) x = x.cpu();
        if (allowed is not null) x = x.masked_fill(allowed.cpu().logical_not(), double.NegativeInfinity);
        if (options.RepetitionPenalty != 1.0 && seen is not null)
        {
            var penalised = where(x > 0, x / options.RepetitionPenalty, x * options.RepetitionPenalty);
            x = where(seen.cpu(), penalised, x);
        }
        if (options.IsGreedy)
            return x.argmax(-1).data<long>().ToArray();

        x = x / options.Temperature;
        if (options.TopK > 0 && options.TopK < x.size(1))
        {
            var kth = x.topk(options.TopK, dim: -1).values.narrow(1, options.TopK - 1, 1);   // (B, 1)
            x = x.masked_fill(x < kth, double.NegativeInfinity);
        }
        if (options.TopP < 1.0)
        {
            var (sorted, indices) = x.sort(-1, descending: true);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            var remove = (cumulative - sorted.softmax(-1)) > options.TopP;   // keep the token that crosses p
            var removeInOriginalOrder = zeros_like(remove).scatter(1, indices, remove);
            x = x.masked_fill(removeInOriginalOrder, double.NegativeInfinity);
        }
        var probs = x.softmax(-1);
        return multinomial(probs, 1, false, generator).squeeze(1).data<long>().ToArray();
    }

    public void Dispose() => generator?.Dispose();
}
