using SharpTune.Models;
using SharpTune.Tokenization;

namespace SharpTune.Generation;

/// <summary>A text completion: the generated text (stop string excluded), its tokens and why it ended.</summary>
public sealed record TextCompletion(string Text, IReadOnlyList<int> PromptIds, IReadOnlyList<int> Tokens, FinishReason FinishReason)
{
    /// <summary>Candidates proposed and accepted when speculative decoding produced it; null otherwise.</summary>
    public Speculative.SpeculativeStats? Speculation { get; init; }
}

/// <summary>
/// Text in, text out over a model and its tokenizer: encodes prompts (with BOS as the tokenizer config says),
/// streams decoded text, and ends a sequence at any stop string (which is not included in the result).
/// </summary>
public sealed class TextGenerator(CausalLanguageModel model, HfTokenizer tokenizer)
{
    public CausalLanguageModel Model { get; } = model;
    public HfTokenizer Tokenizer { get; } = tokenizer;

    /// <summary>Generates a completion for each prompt; <paramref name="onText"/> receives (row, text piece) as produced.</summary>
    public IReadOnlyList<TextCompletion> Generate(IReadOnlyList<string> prompts, GenerationOptions options,
        IReadOnlyList<string>? stopStrings = null, Action<int, string>? onText = null, CancellationToken cancellationToken = default,
        Constrained.ConstrainedGrammar? grammar = null)
    {
        var ids = prompts.Select(p => Tokenizer.Encode(p, addSpecialTokens: true)).ToArray();
        return GenerateFromIds(ids, options, stopStrings, onText, cancellationToken, grammar);
    }

    /// <summary>As <see cref="Generate"/>, from already-encoded prompts (e.g. a rendered chat template).</summary>
    public IReadOnlyList<TextCompletion> GenerateFromIds(IReadOnlyList<IReadOnlyList<int>> promptIds, GenerationOptions options,
        IReadOnlyList<string>? stopStrings = null, Action<int, string>? onText = null, CancellationToken cancellationToken = default,
        Constrained.ConstrainedGrammar? grammar = null)
    {
        var stops = (stopStrings ?? []).Where(s => s.Length > 0).ToArray();
        var eos = options.EosTokenIds ?? Model.Config.EosTokenIds.Concat(Tokenizer.EosTokenId is { } e ? [e] : Array.Empty<int>()).Distinct().ToArray();
        var vocabulary = grammar is null ? null : Constrained.TokenVocabulary.For(Tokenizer, Model.Config.VocabSize);
        var constraints = grammar is null ? null : promptIds.Select(_ => grammar.CreateConstraint(vocabulary!, eos)).ToArray();
        var rows = promptIds.Select(_ => new RowState(Tokenizer.CreateStreamingDecoder(skipSpecialTokens: true), stops)).ToArray();
        var results = TokenGenerator.Generate(Model, promptIds, options with { EosTokenIds = eos }, (row, token) =>
        {
            if (eos.Contains(token)) return true;
            var state = rows[row];
            var piece = state.Decoder.Push(token);
            var (emit, stopped) = state.Accept(piece);
            if (emit.Length > 0) onText?.Invoke(row, emit);
            return !stopped;
        }, cancellationToken, constraints: constraints);
        return results.Select((r, i) =>
        {
            var state = rows[i];
            if (r.FinishReason != FinishReason.Stop)
            {
                var rest = state.Flush();
                if (rest.Length > 0) onText?.Invoke(i, rest);
            }
            return new TextCompletion(state.Text, r.PromptIds, r.Tokens, r.FinishReason) { Speculation = r.Speculation };
        }).ToArray();
    }

    /// <summary>
    /// Holds back text that could be the start of a stop string, so a streamed stop string never reaches the client.
    /// </summary>
    private sealed class RowState(StreamingDecoder decoder, string[] stops)
    {
        private readonly System.Text.StringBuilder emitted = new();
        private string pending = "";

        public StreamingDecoder Decoder { get; } = decoder;
        public string Text => emitted.ToString();

        public (string Emit, bool Stopped) Accept(string piece)
        {
            pending += piece;
            foreach (var stop in stops)
            {
                var at = pending.IndexOf(stop, StringComparison.Ordinal);
                if (at >= 0)
                {
                    var before = pending[..at];
                    emitted.Append(before);
                    pending = "";
                    return (before, true);
                }
            }
            var keep = stops.Length == 0 ? 0 : stops.Max(s => LongestPrefixSuffix(pending, s));
            var emit = pending[..^keep];
            pending = pending[^keep..];
            emitted.Append(emit);
            return (emit, false);
        }

        public string Flush()
        {
            var rest = pending + Decoder.Flush();
            pending = "";
            emitted.Append(rest);
            return rest;
        }

        private static int LongestPrefixSuffix(string text, string stop)
        {
            for (var n = Math.Min(text.Length, stop.Length - 1); n > 0; n--)
                if (text.EndsWith(stop[..n], StringComparison.Ordinal)) return n;
            return 0;
        }
    }
}
