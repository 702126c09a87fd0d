using SharpTune.Models;
using SharpTune.Tokenization;
using SharpTune.Training;

namespace SharpTune.Evaluation;

/// <summary>A continuation's summed log-probability (nats), its token count, and whether greedy decoding would produce it.</summary>
public sealed record ContinuationScore(double LogLikelihood, int Tokens, bool IsGreedy);

/// <summary>
/// lm-evaluation-harness's <c>loglikelihood</c> requests on <see cref="SequenceScorer"/>: each (context, continuation)
/// pair is split by <see cref="ContinuationEncoder"/>, only the continuation's tokens are scored, and no EOS is added
/// (unlike <see cref="LabelScorer"/>, which scores what training supervises). No chat template is applied.
/// </summary>
public sealed class MultipleChoiceScorer(CausalLanguageModel model, HfTokenizer tokenizer, int batchSize = 8)
{
    /// <summary>Scores every (context, continuation) request, in order.</summary>
    /// <param name="requests">The pairs to score.</param>
    /// <param name="scored">Called after each batch with the number of requests scored so far.</param>
    /// <param name="cancellationToken">Checked between batches.</param>
    public IReadOnlyList<ContinuationScore> Score(IReadOnlyList<(string Context, string Continuation)> requests,
        Action<int>? scored = null, CancellationToken cancellationToken = default) =>
        Score(requests, _ => null, scored, cancellationToken);

    /// <param name="origin">What to name in an error about request i (the question's file:line and choice), or null.</param>
    private IReadOnlyList<ContinuationScore> Score(IReadOnlyList<(string Context, string Continuation)> requests, Func<int, string?> origin,
        Action<int>? scored, CancellationToken cancellationToken)
    {
        var maxLength = model.Config.ContextLength;
        var tokenized = requests.Select((r, i) =>
        {
            var (context, continuation) = ContinuationEncoder.EncodePair(tokenizer, r.Context, r.Continuation);
            var where = origin(i) is { } named ? named + ": " : "";
            if (continuation.Length == 0)
                throw new ArgumentException($"{where}the continuation '{r.Continuation}' encodes to no tokens after its context; nothing to score");
            if (continuation.Length >= maxLength)
                throw new ArgumentException($"{where}a continuation of {continuation.Length} tokens leaves no room for context in the model's {maxLength}");
            // Too long for the model: cut the context from the left, as lm-eval does (it keeps one token more, which it
            // feeds without scoring; here every fed token but the first is scorable, so the window is maxLength).
            var ids = context.Concat(continuation).TakeLast(maxLength).ToArray();
            return new TokenizedExample(ids, ids.Select((_, i) => i >= ids.Length - continuation.Length).ToArray());
        }).ToArray();
        return SequenceScorer.Score(model, tokenized, batchSize, scored, cancellationToken).Select(s => new ContinuationScore(s.LogProbSum, s.Tokens, s.Greedy)).ToArray();
    }

    /// <summary>
    /// Scores every choice of every item as <c>targetDelimiter + choice</c> after the item's context (lm-eval's
    /// construct_requests for multiple_choice) and returns each item's scores, one per choice.
    /// </summary>
    /// <param name="items">The questions.</param>
    /// <param name="targetDelimiter">What goes between the context and each choice.</param>
    /// <param name="scored">Called after each batch with the number of choices (over all items) scored so far.</param>
    /// <param name="cancellationToken">Checked between batches.</param>
    public IReadOnlyList<IReadOnlyList<ContinuationScore>> ScoreChoices(IReadOnlyList<MultipleChoiceItem> items, string targetDelimiter = " ",
        Action<int>? scored = null, CancellationToken cancellationToken = default)
    {
        var requests = items.SelectMany(item => item.Choices.Select(choice => (item.Context, targetDelimiter + choice))).ToArray();
        var origins = items.SelectMany(item => item.Choices.Select((_, k) => (item.Location, Choice: k))).ToArray();
        var scores = Score(requests, i => origins[i].Location is { } at ? $"{at}: choice {origins[i].Choice}" : $"choice {origins[i].Choice}",
            scored, cancellationToken);
        var result = new IReadOnlyList<ContinuationScore>[items.Count];
        var next = 0;
        for (var i = 0; i < items.Count; i++)
        {
            result[i] = Enumerable.Range(next, items[i].Choices.Count).Select(k => scores[k]).ToArray();
            next += items[i].Choices.Count;
        }
        return result;
    }
}
