using SharpTune.Models;
using SharpTune.Quantization;
using static TorchSharp.torch;

namespace SharpTune.Generation.Speculative;

/// <summary>
/// One prompt's speculative decoding, as transformers' <c>_assisted_decoding</c> (huggingface/transformers@00a11b6,
/// src/transformers/generation/utils.py): each round a candidate source proposes up to k tokens, the model runs once over
/// the tokens it has not cached plus the candidates, the rule of <see cref="SpeculativeSampling"/> keeps a prefix of them
/// and adds one token of the model's own, and both KV caches forget what was rejected (<see cref="KvCache.Truncate"/>).
/// Every logits processor (logit_bias, the penalties, temperature, top-k, top-p) runs on both models, position by
/// position over the growing prefix, as transformers' <c>logits_processor(candidate_input_ids[:, :cur_len + i], ...)</c>.
/// </summary>
internal static class SpeculativeDecoder
{
    public static GenerationResult Generate(CausalLanguageModel model, IReadOnlyList<int> prompt, GenerationOptions options,
        HashSet<int> eos, Func<int, int, bool>? onToken, CancellationToken cancellationToken)
    {
        var spec = options.Speculative!;
        var draft = spec.DraftModel;
        var capacity = prompt.Count + options.MaxNewTokens;
        var sampling = !options.IsGreedy;

        using var inference = inference_mode();
        using var threads = new DecodeThreads(model.Device, model.WeightDtype);
        using var sampler = new TokenSampler(options);
        using var penalties = new PenaltyRows(prompt, options, model.Config.VocabSize);
        using var cache = new KvCache(model.Config, 1, capacity, model.WeightDtype, model.Device);
        using var draftCache = draft is null ? null : new KvCache(draft.Config, 1, capacity, draft.WeightDtype, draft.Device);

        var limit = MaxCandidates(model, draft);
        var sequence = new List<int>(prompt);
        var generated = new List<int>();
        FinishReason? finish = null;
        var draftTokens = Math.Min(spec.NumDraftTokens, limit);
        long proposed = 0, acceptedTotal = 0;
        var rounds = 0;
        while (finish is null && generated.Count < options.MaxNewTokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            rounds++;
            // The model adds one token of its own after the candidates, so they may fill all but one of the tokens left.
            var room = options.MaxNewTokens - generated.Count - 1;
            int[] candidates;
            List<Tensor>? draftRows = null;
            if (draft is not null)
                (candidates, draftRows) = Propose(draft, draftCache!, sequence, Math.Min(draftTokens, room), eos, sampler, penalties,
                    sampling, spec.ConfidenceThreshold);
            else
                candidates = PromptLookup.Candidates(sequence, spec.MaxMatchingNgramSize, Math.Min(Math.Min(spec.PromptLookupTokens, limit), room), eos);

            var cached = cache.Length;
            int[] tokens;
            int accepted;
            using (var scope = NewDisposeScope())
            {
                var input = sequence.Skip(cached).Concat(candidates).Select(t => (long)t).ToArray();
                var logits = Forward(model, cache, input, cached, candidates.Length + 1);                    // (k + 1, V)
                var (seen, counts) = penalties.Rows(candidates, 0, candidates.Length + 1);
                if (sampling && draftRows is not null)
                {
                    var q = candidates.Length == 0 ? zeros(0, logits.size(1)) : cat(draftRows, 0);
                    (tokens, accepted) = SpeculativeSampling.Accept(sampler.ProbabilityRows(logits, seen, counts), q, candidates,
                        sampler.Uniform, w => (int)sampler.Draw(w.unsqueeze(0))[0]);
                }
                else
                    // Greedy: each row's argmax; prompt lookup's sampling: a sample at each position (as transformers).
                    (tokens, accepted) = SpeculativeSampling.AcceptMatching(sampler.Next(logits, seen, null, counts), candidates);
            }
            draftRows?.ForEach(row => row.Dispose());
            proposed += candidates.Length;
            acceptedTotal += accepted;
            // The model's cache keeps the sequence before this round plus the accepted candidates: the new last token
            // is fed next round. The draft's keeps what it saw of them (it never fed its own last candidate).
            cache.Truncate(sequence.Count + accepted);
            if (draftCache is not null) draftCache.Truncate(Math.Min(draftCache.Length, sequence.Count + accepted));
            // transformers' "heuristic" schedule at 00a11b6 (candidate_generator.py, update_candidate_strategy): +2 when
            // every candidate was accepted (num_matches == len(scores[0]) - 1), −1 otherwise; here capped as the count.
            if (draft is not null && spec.HeuristicSchedule && candidates.Length > 0)
                draftTokens = accepted == candidates.Length ? Math.Min(limit, draftTokens + 2) : Math.Max(1, draftTokens - 1);
            // Both prompts are in the caches now: the rounds that follow feed at most the kernels' rows to either model.
            if (rounds == 1) threads.Narrow();

            foreach (var token in tokens)
            {
                sequence.Add(token);
                generated.Add(token);
                penalties.Add(token);
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
    /// Candidates a round may hold. On the CPU, where the dense and quantized matrix–vector kernels serve products of at
    /// most <see cref="Int8MatVec.MaxRows"/> rows (reading each weight once for all of them, so a pass over 8 positions
    /// costs about one decode step) and anything wider falls back to libtorch's matrix products at prompt speed, a
    /// verification pass (the last token plus the candidates) is kept within those rows: 7 candidates. Elsewhere, none.
    /// Every pass after the first round (the prompts) then fits the kernels (the draft's first step of a round feeds at
    /// most 2 tokens), so the decode steps' narrowed thread budget (<see cref="DecodeThreads"/>) never needs widening.
    /// </summary>
    internal static int MaxCandidates(CausalLanguageModel model, CausalLanguageModel? draft)
    {
        static bool Kernels(CausalLanguageModel m) => m.Device.type == TorchSharp.DeviceType.CPU && DenseMatVec.Available(m.WeightDtype);
        return Kernels(model) || (draft is not null && Kernels(draft)) ? Int8MatVec.MaxRows - 1 : int.MaxValue;
    }

    /// <summary>
    /// Up to <paramref name="count"/> draft tokens, one decode step each, through the same processors as the model
    /// (greedy: the argmax; sampling: a draw from the draft's processed distribution, whose rows are returned). Stops
    /// after an end-of-sequence token, or after a pick the draft gives less than <paramref name="threshold"/> of
    /// probability (transformers' <c>ConfidenceCriteria</c>; the pick is kept).
    /// </summary>
    private static (int[] Candidates, List<Tensor>? Rows) Propose(CausalLanguageModel draft, KvCache cache, List<int> sequence,
        int count, HashSet<int> eos, TokenSampler sampler, PenaltyRows penalties, bool sampling, double threshold)
    {
        var candidates = new List<int>(Math.Max(count, 0));
        var rows = sampling ? new List<Tensor>(Math.Max(count, 0)) : null;
        while (candidates.Count < count)
        {
            using var scope = NewDisposeScope();
            var cached = cache.Length;
            var input = sequence.Skip(Math.Min(cached, sequence.Count)).Concat(candidates.Skip(Math.Max(0, cached - sequence.Count)))
                .Select(t => (long)t).ToArray();
            var logits = Forward(draft, cache, input, cached, 1);                                            // (1, V)
            var (seen, counts) = penalties.Rows(candidates, candidates.Count, 1);
            int token;
            var confidence = 1.0;
            if (sampling)
            {
                var q = sampler.ProbabilityRows(logits, seen, counts);
                token = (int)sampler.Draw(q)[0];
                if (threshold > 0) confidence = q[0, token].item<float>();
                rows!.Add(q.DetachFromDisposeScope());
            }
            else if (threshold > 0)
            {
                var x = sampler.Process(logits, seen, null, counts);
                token = (int)(GreedyArgmax.TryPick(x) ?? x.argmax(-1).data<long>().ToArray())[0];
                confidence = x.softmax(-1)[0, token].item<float>();
            }
            else token = (int)sampler.Next(logits, seen, null, counts)[0];
            candidates.Add(token);
            if (eos.Contains(token) || confidence < threshold) break;
        }
        return (candidates.ToArray(), rows);
    }

    /// <summary>Runs <paramref name="input"/> after the <paramref name="cached"/> positions; logits of the last <paramref name="last"/> of them, (last, V).</summary>
    private static Tensor Forward(CausalLanguageModel model, KvCache cache, long[] input, int cached, int last)
    {
        var device = model.Device;
        var ids = tensor(input, device: device).view(1, input.Length);
        var positions = arange(cached, cached + input.Length, dtype: ScalarType.Int64, device: device).view(1, input.Length);
        // A block of queries after cached keys needs a causal mask: built once here for every layer (each layer would
        // otherwise build the same one; windowed layers narrow it). A single query sees every cached key and the first
        // pass (nothing cached) is plain causal attention, both without a mask.
        var mask = cached > 0 && input.Length > 1
            ? AttentionMasks.CausalWithPadding(ones(1, cached + input.Length, dtype: ScalarType.Bool, device: device), input.Length)
            : null;
        var ctx = new ForwardContext { PositionIds = positions, AttentionMask = mask, Cache = cache, MaxPosition = cached + input.Length - 1 };
        var hidden = model.DecodeHidden(model.EmbedTokens(ids), ctx);                                        // (1, T, C)
        return model.ComputeLogits(hidden.narrow(1, input.Length - last, last)).squeeze(0);                  // (last, V)
    }

    /// <summary>
    /// The penalties' view of one sequence: the tokens it holds (prompt and output, for the repetition penalty) and how
    /// often its output holds each (presence and frequency penalties), as the plain decoder keeps them; rows for
    /// positions inside a round add the candidates before each.
    /// </summary>
    private sealed class PenaltyRows : IDisposable
    {
        private readonly Tensor? seen;     // (1, V) bool, CPU
        private readonly Tensor? counts;   // (1, V) fp32, CPU
        private readonly int width;

        public PenaltyRows(IReadOnlyList<int> prompt, GenerationOptions options, int width)
        {
            this.width = width;
            if (options.RepetitionPenalty != 1.0)
            {
                var row = new bool[width];
                foreach (var token in prompt) row[token] = true;
                seen = tensor(row, [1, width]).DetachFromDisposeScope();
            }
            if (options.PenalisesOutput) counts = zeros(1, width).DetachFromDisposeScope();
        }

        /// <summary>Records a token appended to the output.</summary>
        public void Add(int token)
        {
            if (seen is not null) seen[0, token] = true;
            if (counts is not null)
                using (var count = counts[0, token]) count.add_(1);
        }

        /// <summary>
        /// Rows <paramref name="first"/> … first + count − 1 of a round: row i is the sequence followed by candidates[..i]
        /// (null when no penalty applies).
        /// </summary>
        public (Tensor? Seen, Tensor? Counts) Rows(IReadOnlyList<int> candidates, int first, int count)
        {
            if (seen is null && counts is null) return (null, null);
            var added = new List<long>();
            for (var i = 0; i < count; i++)
                for (var j = 0; j < first + i; j++) added.Add((long)i * width + candidates[j]);
            var delta = zeros((long)count * width);
            if (added.Count > 0) delta.index_add_(0, tensor(added.ToArray()), ones(added.Count), 1);
            delta = delta.view(count, width);
            return (seen?.logical_or(delta > 0), counts is null ? null : counts + delta);
        }

        public void Dispose()
        {
            seen?.Dispose();
            counts?.Dispose();
        }
    }
}
