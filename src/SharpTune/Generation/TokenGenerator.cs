using SharpTune.Models;
using static TorchSharp.torch;

namespace SharpTune.Generation;

/// <summary>
/// Autoregressive decoding with a KV cache over a batch of prompts (left-padded so every row ends at the same column).
/// </summary>
public static class TokenGenerator
{
    /// <summary>
    /// Generates for every prompt. <paramref name="onToken"/> sees each new token as it is produced
    /// (row, token id) and may return false to stop that row (a stop string matched).
    /// </summary>
    public static IReadOnlyList<GenerationResult> Generate(
        CausalLanguageModel model,
        IReadOnlyList<IReadOnlyList<int>> prompts,
        GenerationOptions options,
        Func<int, int, bool>? onToken = null,
        CancellationToken cancellationToken = default,
        bool useCache = true,
        IReadOnlyList<Constrained.ITokenConstraint?>? constraints = null)
    {
        if (prompts.Count == 0) return [];
        options.Validate();
        var vocabulary = model.Config.VocabSize;
        for (var i = 0; i < prompts.Count; i++)
            foreach (var id in prompts[i])
                if (id < 0 || id >= vocabulary)
                    throw new ArgumentException($"prompt {i} holds token id {id}, outside the model's vocabulary (0–{vocabulary - 1})");
        foreach (var token in options.LogitBias?.Keys ?? [])
            if (token >= vocabulary)
                throw new ArgumentException($"logit_bias holds token id {token}, outside the model's vocabulary (0–{vocabulary - 1})");
        var context = PromptContext(model);
        var fitted = prompts.Select((p, i) => FitToContext(p, i, options, context)).ToArray();
        var eos = (options.EosTokenIds ?? model.Config.EosTokenIds).ToHashSet();
        if (options.Speculative is not null)
            return GenerateSpeculatively(model, fitted, options, eos, onToken, cancellationToken, useCache, constraints);
        var batch = fitted.Length;
        var promptLength = fitted.Max(p => p.Count);
        var capacity = promptLength + options.MaxNewTokens;
        var device = model.Device;

        var generated = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        var finish = new FinishReason?[batch];
        // Inference mode, not just no_grad: no version counters or view tracking, a fifth less per tensor call.
        using var inference = inference_mode();
        using var threads = new DecodeThreads(device, model.WeightDtype);
        using var sampler = new TokenSampler(options);
        using var cache = useCache ? new KvCache(model.Config, batch, capacity, model.WeightDtype, device) : null;

        // Left padding: row i's real tokens occupy columns [promptLength - len_i, promptLength). Keys of padding columns
        // stay hidden for the whole generation; generated columns are always visible (a finished row keeps decoding
        // filler tokens, whose outputs are discarded).
        var promptIds = new long[batch, promptLength];
        var promptPositions = new long[batch, promptLength];
        var keyIsReal = new bool[batch, capacity];
        var padded = false;
        var nextPosition = new long[batch];
        for (var r = 0; r < batch; r++)
        {
            var offset = promptLength - fitted[r].Count;
            padded |= offset > 0;
            for (var j = 0; j < fitted[r].Count; j++)
            {
                promptIds[r, offset + j] = fitted[r][j];
                promptPositions[r, offset + j] = j;
            }
            for (var c = offset; c < capacity; c++) keyIsReal[r, c] = true;
            nextPosition[r] = fitted[r].Count;
        }
        using var seen = options.RepetitionPenalty != 1.0 ? SeenTokens(fitted, model.Config.VocabSize) : null;
        using var outputCounts = options.PenalisesOutput ? zeros(batch, model.Config.VocabSize).DetachFromDisposeScope() : null;   // (B, V) fp32
        using var realKeys = padded ? tensor(keyIsReal, device: device) : null;                 // (B, capacity)
        var history = new List<long[]>();                                                        // generated columns

        var length = promptLength;        // columns filled so far
        for (var step = 0; step < options.MaxNewTokens; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            long[] next;
            using (var scope = NewDisposeScope())
            {
                Tensor input;
                ForwardContext ctx;
                if (useCache && step > 0 && !LongRopeSwitchesAt(model.Config, nextPosition.Max() - 1))
                {
                    input = tensor(history[^1], device: device).view(batch, 1);
                    ctx = DecodeStep(nextPosition, realKeys, length, cache!, device);
                }
                else
                {
                    if (useCache && step > 0) cache!.Rewind();   // every position again, into an emptied cache
                    ctx = FullSequence(promptIds, promptPositions, history, realKeys, length, cache, device, out input);
                }
                var hidden = model.DecodeHidden(model.EmbedTokens(input), ctx);
                var logits = model.ComputeLogits(hidden.narrow(1, hidden.size(1) - 1, 1)).squeeze(1); // (B, V)
                using var allowed = constraints is null ? null : AllowedMask(constraints, generated, finish, options.MaxNewTokens, (int)logits.size(1));
                next = sampler.Next(logits, seen, allowed, outputCounts);
            }
            var column = new long[batch];
            for (var r = 0; r < batch; r++)
            {
                var token = finish[r] is null ? (int)next[r] : PadFor(eos, fitted[r]);
                column[r] = token;
                nextPosition[r]++;
                if (finish[r] is not null) continue;
                generated[r].Add(token);
                if (constraints?[r] is { } constraint) constraint.Accept(token);
                if (seen is not null) seen[r, token] = true;
                if (outputCounts is not null)
                    using (var count = outputCounts[r, token]) count.add_(1);
                if (eos.Contains(token)) finish[r] = FinishReason.Eos;
                else if (onToken is not null && !onToken(r, token)) finish[r] = FinishReason.Stop;
            }
            history.Add(column);
            length++;
            if (useCache && step == 0) threads.Narrow();   // the prefill ran on libtorch's threads; the steps run on our kernels'
            if (finish.All(f => f is not null)) break;
        }
        return Enumerable.Range(0, batch)
            // Out of new tokens: cut ("length"), unless a constrained output is complete on its last token, which is whole.
            .Select(r => new GenerationResult(fitted[r], generated[r],
                finish[r] ?? (constraints?[r] is { IsComplete: true } ? FinishReason.Eos : FinishReason.Length)))
            .ToArray();
    }

    /// <summary>
    /// Speculative decoding, one prompt after another (as transformers, which allows a batch of one): refuses what it
    /// cannot honour rather than ignoring it.
    /// </summary>
    private static IReadOnlyList<GenerationResult> GenerateSpeculatively(CausalLanguageModel model, IReadOnlyList<int>[] fitted,
        GenerationOptions options, HashSet<int> eos, Func<int, int, bool>? onToken, CancellationToken cancellationToken, bool useCache,
        IReadOnlyList<Constrained.ITokenConstraint?>? constraints)
    {
        var spec = options.Speculative!;
        if (!useCache) throw new ArgumentException("speculative decoding needs the KV cache (it rolls rejected candidates back out of it)");
        if (constraints is not null) throw new ArgumentException("speculative decoding does not support constrained decoding (a grammar or JSON schema)");
        if (model.ForwardAdapter is not null)
            throw new ArgumentException("speculative decoding does not support prompt or prefix tuning adapters on the model (LoRA-style adapters work)");
        if (model.Config.RopeScaling is { Type: "longrope" })
            throw new ArgumentException("speculative decoding does not support LongRoPE models (their cache is recomputed when the long factors start)");
        RefuseDynamicNtk(model, "model", fitted, options);
        if (spec.DraftModel is { } draft)
        {
            if (draft.Config.VocabSize != model.Config.VocabSize)
                throw new ArgumentException($"the draft model's vocabulary has {draft.Config.VocabSize} tokens but the model's has " +
                    $"{model.Config.VocabSize}: speculative decoding needs a draft model with the same vocabulary");
            if (draft.ForwardAdapter is not null)
                throw new ArgumentException("speculative decoding does not support prompt or prefix tuning adapters on the draft model");
            if (draft.Config.RopeScaling is { Type: "longrope" })
                throw new ArgumentException("speculative decoding does not support a LongRoPE draft model");
            RefuseDynamicNtk(draft, "draft model", fitted, options);
            var draftContext = PromptContext(draft);
            foreach (var prompt in fitted)
                if (prompt.Count + options.MaxNewTokens > draftContext)
                    throw new ContextLengthException($"prompt ({prompt.Count} tokens) + max_new_tokens ({options.MaxNewTokens}) exceed the " +
                        $"draft model's context length of {draftContext}");
        }
        var results = new GenerationResult[fitted.Length];
        for (var r = 0; r < fitted.Length; r++)
        {
            var row = r;
            results[r] = Speculative.SpeculativeDecoder.Generate(model, fitted[r], options, eos,
                onToken is null ? null : (_, token) => onToken(row, token), cancellationToken);
        }
        return results;
    }

    /// <summary>
    /// Dynamic-NTK RoPE (rope_scaling type "dynamic") rotates every position with a base set by the longest position of
    /// the pass once it passes max_position_embeddings: a verification pass's rejected candidates would change the
    /// rotation of the keys kept for the accepted ones. Refused when a generation could get there.
    /// </summary>
    private static void RefuseDynamicNtk(CausalLanguageModel model, string which, IReadOnlyList<int>[] prompts, GenerationOptions options)
    {
        if (model.Config.RopeScaling is not { Type: "dynamic" }) return;
        var longest = prompts.Max(p => (long)p.Count) + options.MaxNewTokens;
        if (longest > model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"speculative decoding does not support the {which}'s dynamic-NTK RoPE (rope_scaling type \"dynamic\") " +
                $"past max_position_embeddings ({model.Config.MaxPositionEmbeddings}; prompt + max_new_tokens reach {longest}): rejected " +
                "candidates there would change the rotary base of the positions kept. Lower max_new_tokens or decode without a draft.");
    }

    /// <summary>Positions a prompt and its new tokens may fill: prompt/prefix tuning's virtual tokens take some before the prompt.</summary>
    internal static int PromptContext(CausalLanguageModel model) => model.Config.ContextLength - (model.ForwardAdapter?.VirtualTokenCount ?? 0);

    private static IReadOnlyList<int> FitToContext(IReadOnlyList<int> prompt, int index, GenerationOptions options, int context)
    {
        if (prompt.Count == 0)
            throw new ArgumentException($"prompt {index} is empty: give at least one token (e.g. BOS)");
        if ((long)prompt.Count + options.MaxNewTokens <= context) return prompt;   // long: int.MaxValue new tokens must not wrap
        if (options.Overflow == ContextOverflow.TruncatePromptLeft && options.MaxNewTokens < context)
            return prompt.Skip(prompt.Count + options.MaxNewTokens - context).ToArray();
        throw new ContextLengthException(
            $"prompt {index} has {prompt.Count} tokens; with max_new_tokens = {options.MaxNewTokens} that is " +
            $"{(long)prompt.Count + options.MaxNewTokens}, more than the model's context length of {context}. " +
            "Shorten the prompt, lower max_new_tokens, or ask for left truncation.");
    }

    /// <summary>
    /// Whether a decode step whose largest position is <paramref name="position"/> is the first to rotate with Phi-3's
    /// LongRoPE long factors. transformers' Phi3ForCausalLM.prepare_inputs_for_generation then drops the cache and
    /// recomputes every position, so the keys cached with the short factors are not mixed with long-factor queries: the
    /// continuation is the one a run without a cache gives.
    /// </summary>
    internal static bool LongRopeSwitchesAt(ModelConfig config, long position) =>
        config.Architecture == "Phi3ForCausalLM" && config.RopeScaling is { Type: "longrope" } s && position == s.OriginalMaxPositionEmbeddings;

    /// <summary>Context for one new token per row after the cache holds everything before it.</summary>
    private static ForwardContext DecodeStep(long[] nextPosition, Tensor? realKeys, int length, KvCache cache, Device device)
    {
        var batch = nextPosition.Length;
        var positions = tensor(nextPosition.Select(p => p - 1).ToArray(), device: device).view(batch, 1);
        // A single query may see every cached key except left padding.
        var mask = realKeys?.narrow(1, 0, length).view(batch, 1, 1, length);
        return new ForwardContext { PositionIds = positions, AttentionMask = mask, Cache = cache, MaxPosition = nextPosition.Max() - 1 };
    }

    /// <summary>Context (and input ids) for the whole sequence so far: the prefill, or every step without a cache.</summary>
    private static ForwardContext FullSequence(long[,] promptIds, long[,] promptPositions, List<long[]> history, Tensor? realKeys,
        int length, KvCache? cache, Device device, out Tensor input)
    {
        var batch = promptIds.GetLength(0);
        var promptLength = promptIds.GetLength(1);
        var ids = new long[batch, length];
        var positions = new long[batch, length];
        for (var r = 0; r < batch; r++)
        {
            for (var c = 0; c < promptLength; c++)
            {
                ids[r, c] = promptIds[r, c];
                positions[r, c] = promptPositions[r, c];
            }
            var promptReal = promptLength == 0 ? 0 : positions[r, promptLength - 1] + 1;
            for (var c = promptLength; c < length; c++)
            {
                ids[r, c] = history[c - promptLength][r];
                positions[r, c] = promptReal + c - promptLength;
            }
        }
        input = tensor(ids, device: device);
        var mask = realKeys is null ? null : AttentionMasks.CausalWithPadding(realKeys.narrow(1, 0, length), length);
        return new ForwardContext { PositionIds = tensor(positions, device: device), AttentionMask = mask, Cache = cache };
    }

    /// <summary>The (B, V) mask of tokens each row's constraint allows (every token for rows without one); a row with none left ends.</summary>
    private static Tensor AllowedMask(IReadOnlyList<Constrained.ITokenConstraint?> constraints, List<int>[] generated, FinishReason?[] finish,
        int maxNewTokens, int width)
    {
        var mask = new bool[constraints.Count * width];
        for (var r = 0; r < constraints.Count; r++)
        {
            var row = mask.AsSpan(r * width, width);
            if (constraints[r] is { } c && finish[r] is null) c.FillAllowed(row, maxNewTokens - generated[r].Count);
            else row.Fill(true);
            if (row.IndexOf(true) < 0)
            {
                finish[r] = FinishReason.Eos;   // nothing may follow (complete output and no end token to write): the row ends
                row.Fill(true);
            }
        }
        return tensor(mask, [constraints.Count, width]);
    }

    private static int PadFor(HashSet<int> eos, IReadOnlyList<int> prompt) => eos.Count > 0 ? eos.First() : prompt[^1];

    private static Tensor SeenTokens(IReadOnlyList<IReadOnlyList<int>> prompts, int vocab)
    {
        var seen = zeros(prompts.Count, vocab, dtype: ScalarType.Bool);
        for (var r = 0; r < prompts.Count; r++)
            foreach (var t in prompts[r])
                seen[r, t] = true;
        return seen.DetachFromDisposeScope();
    }
}
