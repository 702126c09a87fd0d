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
        bool useCache = true)
    {
        if (prompts.Count == 0) return [];
        // Prompt/prefix tuning's virtual tokens take positions (and, for prompt tuning, cache slots) before the prompt.
        var virtualTokens = model.ForwardAdapter?.VirtualTokenCount ?? 0;
        var context = model.Config.MaxPositionEmbeddings - virtualTokens;
        var fitted = prompts.Select((p, i) => FitToContext(p, i, options, context)).ToArray();
        var eos = (options.EosTokenIds ?? model.Config.EosTokenIds).ToHashSet();
        var batch = fitted.Length;
        var promptLength = fitted.Max(p => p.Count);
        var capacity = promptLength + options.MaxNewTokens;
        var device = model.Device;

        var generated = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        var finish = new FinishReason?[batch];
        using var noGrad = no_grad();
        using var sampler = new TokenSampler(options);
        using var cache = useCache ? new KvCache(model.Config, batch, capacity + virtualTokens, model.WeightDtype, device) : null;

        // Left padding: row i's real tokens occupy columns [promptLength - len_i, promptLength).
        var ids = new long[batch, capacity];
        var real = new bool[batch, capacity];
        var nextPosition = new long[batch];
        for (var r = 0; r < batch; r++)
        {
            var offset = promptLength - fitted[r].Count;
            for (var j = 0; j < fitted[r].Count; j++)
            {
                ids[r, offset + j] = fitted[r][j];
                real[r, offset + j] = true;
            }
            nextPosition[r] = fitted[r].Count;
        }
        using var seen = options.RepetitionPenalty != 1.0 ? SeenTokens(fitted, model.Config.VocabSize) : null;

        var length = promptLength;        // columns filled so far
        var start = 0;                    // first column not yet in the cache
        for (var step = 0; step < options.MaxNewTokens; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            long[] next;
            using (var scope = NewDisposeScope())
            {
                var from = useCache ? start : 0;
                var input = tensor(Slice(ids, from, length), device: device);                    // (B, T)
                var isReal = tensor(Slice(real, 0, length), device: device);                     // (B, S)
                var positions = (isReal.to(ScalarType.Int64).cumsum(1) - 1).clamp_min(0).narrow(1, from, length - from);
                var ctx = new ForwardContext
                {
                    PositionIds = positions,
                    AttentionMask = AttentionMasks.CausalWithPadding(isReal, length - from),
                    Cache = cache,
                };
                var hidden = model.DecodeHidden(model.EmbedTokens(input), ctx);
                var logits = model.ComputeLogits(hidden.narrow(1, hidden.shape[1] - 1, 1)).squeeze(1); // (B, V)
                next = sampler.Next(logits, seen);
            }
            start = length;
            for (var r = 0; r < batch; r++)
            {
                var token = finish[r] is null ? (int)next[r] : PadFor(eos, fitted[r]);
                ids[r, length] = token;
                real[r, length] = finish[r] is null;
                if (finish[r] is not null) continue;
                generated[r].Add(token);
                if (seen is not null) seen[r, token] = true;
                if (eos.Contains(token)) finish[r] = FinishReason.Eos;
                else if (onToken is not null && !onToken(r, token)) finish[r] = FinishReason.Stop;
            }
            length++;
            if (finish.All(f => f is not null)) break;
        }
        return Enumerable.Range(0, batch)
            .Select(r => new GenerationResult(fitted[r], generated[r], finish[r] ?? FinishReason.Length))
            .ToArray();
    }

    private static IReadOnlyList<int> FitToContext(IReadOnlyList<int> prompt, int index, GenerationOptions options, int context)
    {
        if (prompt.Count == 0)
            throw new ArgumentException($"prompt {index} is empty: give at least one token (e.g. BOS)");
        if (prompt.Count + options.MaxNewTokens <= context) return prompt;
        if (options.Overflow == ContextOverflow.TruncatePromptLeft && options.MaxNewTokens < context)
            return prompt.Skip(prompt.Count + options.MaxNewTokens - context).ToArray();
        throw new ContextLengthException(
            $"prompt {index} has {prompt.Count} tokens; with max_new_tokens = {options.MaxNewTokens} that is " +
            $"{prompt.Count + options.MaxNewTokens}, more than the model's context length of {context}. " +
            "Shorten the prompt, lower max_new_tokens, or ask for left truncation.");
    }

    private static int PadFor(HashSet<int> eos, IReadOnlyList<int> prompt) => eos.Count > 0 ? eos.First() : prompt[^1];

    private static T[,] Slice<T>(T[,] source, int from, int to)
    {
        var rows = source.GetLength(0);
        var result = new T[rows, to - from];
        for (var r = 0; r < rows; r++)
            for (var c = from; c < to; c++)
                result[r, c - from] = source[r, c];
        return result;
    }

    private static Tensor SeenTokens(IReadOnlyList<IReadOnlyList<int>> prompts, int vocab)
    {
        var seen = zeros(prompts.Count, vocab, dtype: ScalarType.Bool);
        for (var r = 0; r < prompts.Count; r++)
            foreach (var t in prompts[r])
                seen[r, t] = true;
        return seen.DetachFromDisposeScope();
    }
}
