using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Generation.Speculative;

/// <summary>
/// One prompt's speculative decoding, as transformers' <c>_assisted_decoding</c> (huggingface/transformers@00a11b6,
/// src/transformers/generation/utils.py): each round a candidate source proposes up to k tokens, the model runs once over
/// the tokens it has not cached plus the candidates, the rule of <see cref="SpeculativeSampling"/> keeps a prefix of them
/// and adds one token of the model's own, and both KV caches forget what was rejected (<see cref="KvCache.Truncate"/>).
/// </summary>
internal static class SpeculativeDecoder
{
    public static GenerationResult Generate(CausalLanguageModel model, IReadOnlyList<int> prompt, GenerationOptions options,
        HashSet<int> eos, Func<int, int, bool>? onToken, CancellationToken cancellationToken)
    {
        var spec = options.Speculative!;
        var draft = spec.DraftModel;
        var device = model.Device;
        var capacity = prompt.Count + options.MaxNewTokens;
        var sampling = !options.IsGreedy;
        var random = new Random(unchecked((int)(options.Seed ?? Random.Shared.NextInt64())));

        using var inference = inference_mode();
        using var sampler = new TokenSampler(options);
        using var cache = new KvCache(model.Config, 1, capacity, model.WeightDtype, device);
        using var draftCache = draft is null ? null : new KvCache(draft.Config, 1, capacity, draft.WeightDtype, draft.Device);

        var sequence = new List<int>(prompt);
        var generated = new List<int>();
        FinishReason? finish = null;
        var draftTokens = spec.NumDraftTokens;
        long proposed = 0, acceptedTotal = 0;
        var rounds = 0;
        while (finish is null && generated.Count < options.MaxNewTokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            rounds++;
            // The model adds one token of its own after the candidates, so they may fill all but one of the tokens left.
            var room = options.MaxNewTokens - generated.Count - 1;
            int[] candidates;
            List<double[]>? draftProbabilities = null;
            if (draft is not null)
                (candidates, draftProbabilities) = Propose(draft, draftCache!, sequence, Math.Min(draftTokens, room), eos, sampler, sampling, random);
            else
                candidates = PromptLookup.Candidates(sequence, spec.MaxMatchingNgramSize, Math.Min(spec.PromptLookupTokens, room), eos);

            var cached = cache.Length;
            int[] tokens;
            int accepted;
            using (var scope = NewDisposeScope())
            {
                var input = sequence.Skip(cached).Concat(candidates).Select(t => (long)t).ToArray();
                var logits = Forward(model, cache, input, cached, candidates.Length + 1);                    // (k + 1, V)
                if (sampling && draftProbabilities is not null)
                    (tokens, accepted) = SpeculativeSampling.Accept(Probabilities(sampler, logits), draftProbabilities, candidates, random);
                else
                {
                    var picked = sampling ? SampleRows(Probabilities(sampler, logits), random) : Argmax(sampler, logits, options);
                    (tokens, accepted) = SpeculativeSampling.AcceptMatching(picked, candidates);
                }
            }
            proposed += candidates.Length;
            acceptedTotal += accepted;
            // The model's cache keeps the sequence before this round plus the accepted candidates: the new last token
            // is fed next round. The draft's keeps what it saw of them (it never fed its own last candidate).
            cache.Truncate(sequence.Count + accepted);
            if (draftCache is not null) draftCache.Truncate(Math.Min(draftCache.Length, sequence.Count + accepted));
            if (draft is not null && spec.HeuristicSchedule && candidates.Length > 0)
                draftTokens = accepted == candidates.Length ? draftTokens + 2 : Math.Max(1, draftTokens - 1);

            foreach (var token in tokens)
            {
                sequence.Add(token);
                generated.Add(token);
                if (eos.Contains(token)) finish = FinishReason.Eos;
                else if (onToken is not null && !onToken(0, token)) finish = FinishReason.Stop;
                if (finish is not null || generated.Count >= options.MaxNewTokens) break;
            }
        }
        return new GenerationResult(prompt, generated, finish ?? FinishReason.Length)
        {
            Speculation = new SpeculativeStats(proposed, acceptedTotal, rounds),
        };
    }

    /// <summary>
    /// Up to <paramref name="count"/> draft tokens, one decode step each (greedy, or drawn from the draft's processed
    /// distribution, whose rows are returned when sampling); stops after an end-of-sequence token.
    /// </summary>
    private static (int[] Candidates, List<double[]>? Probabilities) Propose(CausalLanguageModel draft, KvCache cache, List<int> sequence,
        int count, HashSet<int> eos, TokenSampler sampler, bool sampling, Random random)
    {
        var candidates = new List<int>(Math.Max(count, 0));
        var probabilities = sampling ? new List<double[]>(Math.Max(count, 0)) : null;
        while (candidates.Count < count)
        {
            using var scope = NewDisposeScope();
            var cached = cache.Length;
            var input = sequence.Skip(Math.Min(cached, sequence.Count)).Concat(candidates.Skip(Math.Max(0, cached - sequence.Count)))
                .Select(t => (long)t).ToArray();
            var logits = Forward(draft, cache, input, cached, 1);                                            // (1, V)
            int token;
            if (sampling)
            {
                var row = Probabilities(sampler, logits)[0];
                probabilities!.Add(row);
                token = SpeculativeSampling.Draw(row, random);
            }
            else token = (int)logits.argmax(-1).cpu().item<long>();
            candidates.Add(token);
            if (eos.Contains(token)) break;
        }
        return (candidates.ToArray(), probabilities);
    }

    /// <summary>Runs <paramref name="input"/> after the <paramref name="cached"/> positions; logits of the last <paramref name="last"/> of them, (last, V).</summary>
    private static Tensor Forward(CausalLanguageModel model, KvCache cache, long[] input, int cached, int last)
    {
        var device = model.Device;
        var ids = tensor(input, device: device).view(1, input.Length);
        var positions = arange(cached, cached + input.Length, dtype: ScalarType.Int64, device: device).view(1, input.Length);
        // No mask: a block after cached keys gets an explicit causal one, a single query sees every cached key.
        var ctx = new ForwardContext { PositionIds = positions, Cache = cache, MaxPosition = cached + input.Length - 1 };
        var hidden = model.DecodeHidden(model.EmbedTokens(ids), ctx);                                        // (1, T, C)
        return model.ComputeLogits(hidden.narrow(1, input.Length - last, last)).squeeze(0);                  // (last, V)
    }

    /// <summary>Each row's argmax, after logit_bias when set (the only processor greedy speculative decoding allows).</summary>
    private static int[] Argmax(TokenSampler sampler, Tensor logits, GenerationOptions options)
    {
        var x = options.LogitBias is { Count: > 0 } ? sampler.Process(logits, null, null) : logits;
        return x.argmax(-1).cpu().data<long>().Select(t => (int)t).ToArray();
    }

    /// <summary>Rows of probabilities after logit_bias, temperature, top-k and top-p, as doubles.</summary>
    private static List<double[]> Probabilities(TokenSampler sampler, Tensor logits)
    {
        var probs = sampler.Process(logits, null, null).softmax(-1).to(ScalarType.Float64).contiguous();
        var rows = (int)probs.size(0);
        var width = (int)probs.size(1);
        var flat = probs.data<double>().ToArray();
        return Enumerable.Range(0, rows).Select(r => flat.AsSpan(r * width, width).ToArray()).ToList();
    }

    private static int[] SampleRows(List<double[]> rows, Random random) => rows.Select(r => SpeculativeSampling.Draw(r, random)).ToArray();
}
